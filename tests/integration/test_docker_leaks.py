"""Must-show 3: kill -9 the orchestrator mid-attempt; `speedrun cleanup` leaves no labelled
container, network or volume behind."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests import docker_support
from tests.conftest import run_cli
from tests.integration.test_recovery import _kill_when, _start

pytestmark = pytest.mark.docker

PROJECT = "io.speedrun.project=speedrun-orchestrator"


def _project_resources() -> list[str]:
    found = []
    for kind, listing in (("container", ["ls", "-a"]), ("network", ["ls"]), ("volume", ["ls"])):
        out = subprocess.run(
            ["docker", kind, *listing, "-q", "--filter", f"label={PROJECT}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found += [f"{kind} {x}" for x in out.split()]
    return found


@pytest.mark.parametrize("state", ["acting", "scoring"])
def test_cleanup_after_a_killed_orchestrator_leaves_nothing(state: str, speedrun_env: dict[str, str]) -> None:
    docker_support.require_docker()
    env = {**speedrun_env, "SPEEDRUN_BACKEND": "docker"}
    before = set(_project_resources())
    agent = "oracle" if state == "scoring" else "null"
    proc = _start(env, "run", "--task", "toy-r1-r2", "--agent", agent, "--backend", "docker", "--json")
    attempt_id = _kill_when(env, proc, {state}, timeout=180)
    deadline = time.monotonic() + 30
    left = set(_project_resources()) - before
    while state == "scoring" and not left:  # the kill can land just before the first container
        assert time.monotonic() < deadline, "the scorer never started a container"
        time.sleep(0.2)
        left = set(_project_resources()) - before
    if state == "acting":
        assert docker_support.labelled(attempt_id), "the dead orchestrator left its sandbox container"
    assert left, "something was left to clean"

    # the orphan's owner is dead, so cleanup may take everything it left
    cleaned = run_cli("cleanup", "--json", env=env)
    assert cleaned.returncode == 0, cleaned.stderr
    assert json.loads(cleaned.stdout), "cleanup reported what it removed"
    assert not set(_project_resources()) - before, "no labelled container, network or volume remains"

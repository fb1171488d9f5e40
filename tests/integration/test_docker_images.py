"""Must-show 4: `speedrun images lock` writes digests; `verify` fails clearly on a mismatch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests import docker_support
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.docker


def test_lock_writes_digests_and_verify_catches_a_mismatch(
    tmp_path: Path, speedrun_env: dict[str, str]
) -> None:
    docker_support.require_docker()
    images = tmp_path / "images"
    shutil.copytree(REPO / "images", images)
    (images / "lock.json").unlink(missing_ok=True)
    env = {**speedrun_env, "SPEEDRUN_IMAGES_DIR": str(images), "SPEEDRUN_RECORDS_DIR": str(REPO / "records")}

    # the tiny image is the one require_docker built; locking every image would need them all
    locked = run_cli("images", "lock", docker_support.IMAGE, "--json", env=env)
    assert locked.returncode == 0, locked.stderr
    entry = json.loads((images / "lock.json").read_text())["images"][docker_support.IMAGE]
    assert entry["digest"].startswith("sha256:") and len(entry["digest"]) == 71
    assert "tiny-r1" in entry["records"]

    ok = run_cli("images", "verify", env=env)
    assert ok.returncode == 0, ok.stderr
    assert f"{docker_support.IMAGE}: ok" in ok.stdout

    lock = json.loads((images / "lock.json").read_text())
    lock["images"][docker_support.IMAGE]["digest"] = "sha256:" + "0" * 64
    (images / "lock.json").write_text(json.dumps(lock))
    bad = run_cli("images", "verify", env=env)
    assert bad.returncode == 2, bad
    assert "MISMATCH" in bad.stdout
    assert f"has digest {entry['digest']}, the lock says sha256:{'0' * 64}" in bad.stderr

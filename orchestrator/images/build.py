"""Building environment images with the docker CLI, and reading their digests.

The ``host-env`` builder stages the running environment's site-packages (hard
links: instant, no extra disk) minus what no CPU run loads (triton, lazily opened
CUDA libraries, test and build tools), builds that as an environment layer tagged
by a hash of its inputs (so it is built once per environment), then adds the
orchestrator package on top. The ``dockerfile`` builder is a plain BuildKit build.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sysconfig
from importlib import metadata
from pathlib import Path

from orchestrator.domain import Progress
from orchestrator.errors import BackendError, UsageError
from orchestrator.images.catalog import ImageTarget

# Nothing a CPU run of the tiny track loads: triton (GPU kernels), CUDA libraries torch
# opens lazily with dlopen (not in any DT_NEEDED), headers, and tools of this checkout.
_EXCLUDE = [
    "triton",
    "triton-*",
    "pip",
    "pip-*",
    "setuptools*",
    "_pytest",
    "pytest*",
    "py.py",
    "ruff*",
    "go_task*",
    "__editable__*",
    "_speedrun_orchestrator*",
    "speedrun_orchestrator*",
    "*.pth",
    "nvidia/*/include",
    "nvidia/*/bin",
    "nvidia/cudnn/lib/libcudnn_*",
    "nvidia/cu13/lib/libcusolverMg*",
    "nvidia/cu13/lib/libnvperf*",
    "nvidia/cu13/lib/libcheckpoint*",
    "nvidia/nvshmem/lib/nvshmem_transport_*",
    "__pycache__",
]


def _excluded(rel: str) -> bool:
    return any(fnmatch.fnmatch(rel, pattern) for pattern in _EXCLUDE)


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def env_fingerprint(base_id: str) -> str:
    """Hash of what the environment layer is made of: base image and every package version."""
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())
    text = "\n".join([base_id, *_EXCLUDE, *dists])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stage_tree(source: Path, target: Path, root: Path) -> None:
    for entry in os.scandir(source):
        path = Path(entry.path)
        rel = path.relative_to(root).as_posix()
        if _excluded(rel) or _excluded(entry.name):
            continue
        dest = target / entry.name
        if entry.is_dir(follow_symlinks=False):
            dest.mkdir()
            _stage_tree(path, dest, root)
        elif entry.is_file(follow_symlinks=False):
            try:
                os.link(path, dest)
            except OSError:  # another filesystem: copy
                shutil.copy2(path, dest)


def docker(*args: str, progress: Progress | None = None, capture: bool = False) -> str:
    """Run the docker CLI; its output goes to ``progress`` line by line.

    Raises: BackendError when it fails (daemon down, build error).
    """
    try:
        proc = subprocess.Popen(
            ["docker", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "DOCKER_CLI_HINTS": "false"},
        )
    except FileNotFoundError as e:
        raise BackendError("the docker CLI is not installed") from e
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if progress is not None and not capture:
            progress(line.rstrip())
    if proc.wait() != 0:
        tail = "".join(lines[-15:]).strip()
        raise BackendError(f"docker {args[0]} failed (exit {proc.returncode}): {tail}")
    return "".join(lines)


def image_id(ref: str) -> str | None:
    """The local image id of ``ref``, or None when it is not on this engine."""
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True
    )
    if proc.returncode == 0:
        return proc.stdout.strip()
    if "No such image" in proc.stderr or "No such object" in proc.stderr:
        return None
    raise BackendError(f"docker image inspect {ref}: {proc.stderr.strip()}")


def build(target: ImageTarget, repo: Path, staging: Path, tag: str, progress: Progress) -> str:
    """Build ``target`` as ``<name>:<tag>``; returns its image id.

    Raises: BackendError (docker failed), UsageError (missing base image).
    """
    ref = f"{target.name}:{tag}"
    if target.builder == "dockerfile":
        dockerfile = str(repo / target.dockerfile)
        docker("build", "-f", dockerfile, *_target(target), "-t", ref, str(repo), progress=progress)
    else:
        env_ref = _build_env(target, repo, staging, progress)
        app = staging / f"{target.name}-app"
        shutil.rmtree(app, ignore_errors=True)
        ignore = shutil.ignore_patterns("__pycache__")
        for folder in target.context:
            shutil.copytree(repo / folder, app / folder, ignore=ignore)
        if target.metadata:
            _stage_metadata(app / "dist-info")
        progress(f"building {ref} on {env_ref}")
        docker(
            "build", "-q", "-f", str(repo / target.dockerfile), "--build-arg", f"ENV_IMAGE={env_ref}",
            "-t", ref, str(app), progress=progress,
        )  # fmt: skip
        shutil.rmtree(app, ignore_errors=True)
    built = image_id(ref)
    assert built is not None
    return built


def _target(target: ImageTarget) -> list[str]:
    """The environment group (stable or nightly torch) and the host CA bundle as a build secret."""
    group = ["--build-arg", f"TORCH_GROUP={target.target}"] if target.target else []
    return [*group, "--secret", "id=ca,src=/etc/ssl/certs/ca-certificates.crt"]


def _stage_metadata(folder: Path) -> None:
    """The project's METADATA and entry points, as installed here (the code itself is copied)."""
    dist = metadata.distribution("speedrun-orchestrator")
    folder.mkdir(parents=True)
    for name in ("METADATA", "entry_points.txt"):
        text = dist.read_text(name)
        if text is None:
            raise UsageError(f"the installed speedrun-orchestrator has no {name}; reinstall it")
        (folder / name).write_text(text)


def _build_env(target: ImageTarget, repo: Path, staging: Path, progress: Progress) -> str:
    assert target.base and target.env_dockerfile
    base_id = image_id(target.base)
    if base_id is None:
        raise UsageError(f"base image {target.base} is missing; build it with images/base/build.sh")
    # named by its recipe, not by the target: targets on one environment share one build
    # (and its layers, so a node that holds one image pulls or imports little of another)
    env_ref = f"speedrun-env-{Path(target.env_dockerfile).parent.name}:{env_fingerprint(base_id)}"
    if image_id(env_ref) is not None:
        return env_ref
    context = staging / f"{target.name}-env"
    shutil.rmtree(context, ignore_errors=True)
    (context / "site-packages").mkdir(parents=True)
    progress(f"staging the python environment from {_site_packages()}")
    _stage_tree(_site_packages(), context / "site-packages", _site_packages())
    progress(f"building {env_ref} (once per environment)")
    try:
        docker(
            "build", "-q", "-f", str(repo / target.env_dockerfile), "--build-arg", f"BASE={target.base}",
            "-t", env_ref, str(context), progress=progress,
        )  # fmt: skip
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return env_ref

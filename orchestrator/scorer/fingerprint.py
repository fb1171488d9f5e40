"""The hardware a score was measured on. Scores from different fingerprints never mix."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2)
    except OSError:
        pass
    return 0


def _gpus() -> list[dict[str, str]]:
    if shutil.which("nvidia-smi") is None:
        return []
    query = "name,driver_version,memory.total,clocks.max.sm"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    keys = query.split(",")
    return [
        dict(zip(keys, (v.strip() for v in row.split(",")), strict=False))
        for row in out.splitlines()
        if row.strip()
    ]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def collect() -> dict[str, Any]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "memory_gib": _memory_gib(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "gpus": _gpus(),
        "cuda_visible_devices": visible,
    }


def fingerprint_hash(fp: dict[str, Any]) -> str:
    """Hash of the fields that change timings; device visibility is excluded."""
    stable = {k: v for k, v in fp.items() if k != "cuda_visible_devices"}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()

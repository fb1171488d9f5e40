"""Finding and killing processes on this host through /proc.

Processes we start carry a label in their environment (``SPEEDRUN_LABEL=<id>``),
inherited by everything they spawn. A process that leaves our process group with
setsid() still carries it, so a sweep by label catches what a group kill misses.
(A process that also scrubs its environment escapes the local backend; real
isolation is the container and pod backends' job: their cgroups hold everything.)
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

LABEL_ENV = "SPEEDRUN_LABEL"
_PROC = Path("/proc")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _pids() -> Iterator[int]:
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _labels_of(pid: int) -> set[str]:
    try:
        raw = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return set()
    prefix = f"{LABEL_ENV}=".encode()
    return {
        item[len(prefix) :].decode(errors="replace") for item in raw.split(b"\0") if item.startswith(prefix)
    }


def find_labelled(label_prefix: str) -> dict[int, str]:
    """pid -> label for every live process whose label starts with ``label_prefix``."""
    found: dict[int, str] = {}
    me = os.getpid()
    for pid in _pids():
        if pid == me:
            continue
        for label in _labels_of(pid):
            if label.startswith(label_prefix):
                found[pid] = label
    return found


def kill_labelled(label_prefix: str) -> list[int]:
    """SIGKILL every process carrying a matching label; returns the pids signalled."""
    killed = []
    for pid in find_labelled(label_prefix):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def session_rss_bytes(sid: int) -> int:
    """Resident memory of every process in session ``sid`` (our process groups are sessions)."""
    total = 0
    for pid in _pids():
        try:
            stat = (_PROC / str(pid) / "stat").read_text()
        except OSError:
            continue
        # fields after the parenthesised command name; session is field 6, rss field 24
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[3]) == sid:
            total += int(fields[21]) * _PAGE
    return total


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start_ticks(pid: int) -> int | None:
    """Start time of a pid in clock ticks since boot: tells a live pid from a reused one."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[19])

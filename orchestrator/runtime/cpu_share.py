"""Who had the CPUs while a run was timed: the run, something else, or nobody.

A timed run on a shared machine is slowed when other processes, or the hypervisor
(steal time), take CPUs the run was waiting for. ``/proc/stat`` counts, per CPU,
busy, idle and stolen time; subtracting what the run and the watching process used
leaves what went to others. Only the CPUs this process may run on are counted: the
run inherits that affinity, so work on other CPUs did not compete with it. Others
being busy slows the run only if it waited for a CPU meanwhile: the run-queue delay
of its threads (procfs.tree_cpu) tells.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

_PROC_STAT = Path("/proc/stat")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds at one moment, summed over the CPUs counted."""

    at: float
    """time.monotonic() of the reading."""
    busy_s: float
    idle_s: float
    steal_s: float
    own_s: float
    """CPU this process (the watcher) had used."""
    cpus: int


class CpuShare(BaseModel):
    """Mean cores each party held over a timed window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: int
    run_cores: float
    run_waiting_cores: float
    """The run's threads were runnable but had no CPU (its own surplus threads count too)."""
    others_cores: float
    """Other processes on the same CPUs (the watcher excluded)."""
    steal_cores: float
    """Taken by the hypervisor while this machine wanted to run."""
    idle_cores: float

    @property
    def lost_cores(self) -> float:
        """What others took from the run: their CPU, as far as the run was kept waiting, and steal."""
        return min(self.others_cores, self.run_waiting_cores) + self.steal_cores

    def contended(self, max_lost_cores: float) -> bool:
        """Others took more than ``max_lost_cores`` from the run.

        A run that sleeps or waits on a GPU is not slowed by work on the CPUs it left
        idle; a run with more threads than CPUs waits on itself, which others' idle
        time would not have changed.
        """
        return self.lost_cores > max_lost_cores


def sample() -> CpuSample | None:
    """None where /proc/stat cannot be read (not Linux)."""
    try:
        lines = _PROC_STAT.read_text().splitlines()
    except OSError:
        return None
    mine = {f"cpu{n}" for n in os.sched_getaffinity(0)}
    busy = idle = steal = 0
    counted = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name not in mine:
            continue
        # user nice system idle iowait irq softirq steal (guest time is inside user already)
        f = [int(v) for v in rest.split()[:8]]
        busy += f[0] + f[1] + f[2] + f[5] + f[6]
        idle += f[3] + f[4]
        steal += f[7]
        counted += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CpuSample(
        at=time.monotonic(),
        busy_s=busy / _TICKS,
        idle_s=idle / _TICKS,
        steal_s=steal / _TICKS,
        own_s=usage.ru_utime + usage.ru_stime,
        cpus=counted,
    )


def share(before: CpuSample, after: CpuSample, run_cpu_s: float, run_waited_s: float) -> CpuShare | None:
    """What each party held between two samples, given the run's own CPU and run-queue seconds."""
    wall = after.at - before.at
    if wall <= 0 or before.cpus != after.cpus:
        return None
    own = after.own_s - before.own_s
    others = max(0.0, after.busy_s - before.busy_s - run_cpu_s - own)
    return CpuShare(
        cpus=after.cpus,
        run_cores=round(run_cpu_s / wall, 3),
        run_waiting_cores=round(run_waited_s / wall, 3),
        others_cores=round(others / wall, 3),
        steal_cores=round((after.steal_s - before.steal_s) / wall, 3),
        idle_cores=round((after.idle_s - before.idle_s) / wall, 3),
    )

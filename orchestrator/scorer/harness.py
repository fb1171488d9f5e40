"""The scorer harness: trusted code that times runs in a fresh scorer environment.

``python -m orchestrator.scorer.harness PLAN_JSON OUT_DIR``

For every planned run: a fresh folder with the pristine record files plus (for a
submission) only the submitted files; fresh HOME and compile caches; launch as a
new process group; timestamp each output line on arrival with this process's
clock; stop at the first progress line at or below the target; kill the whole
group before reading anything. Progress goes to stdout as JSON lines, the results
to OUT_DIR/results.json. Nothing here trusts the run's own sense of time.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from orchestrator.runtime import cpu_share
from orchestrator.runtime.process import (
    ExitReason,
    LineWatcher,
    OutputLine,
    ProcessLimits,
    ProcessResult,
    inherited_env,
    label_for,
    run_process_group,
)
from orchestrator.runtime.progress import ProgressLine, parse_progress_line
from orchestrator.scorer import fingerprint
from orchestrator.scorer import jail as jail_module
from orchestrator.scorer.plan import (
    Flag,
    HarnessEvent,
    HarnessResult,
    JailSpec,
    PlannedRun,
    Role,
    RunMeasurement,
    ScoringPlan,
)

# A reported train_time may lead the scorer's clock by this much (line buffering, clock
# granularity) before it counts as claiming more time than passed.
_CLOCK_SLACK_S = 0.5
_PROGRESS_EVERY_S = 5.0
_LOG_TAIL_BYTES = 8 * 1024
_JAIL_FAILED = "speedrun-jail-failed:"


class JailFailed(RuntimeError):
    """The confinement could not be set up: the scorer's environment is at fault, not the run."""


_CURVE_POINTS = 256  # loss-curve points kept per run (halved whenever exceeded)


Emit = Callable[[HarnessEvent], None]


def _emit(event: HarnessEvent) -> None:
    sys.stdout.write(event.model_dump_json(exclude_none=True) + "\n")
    sys.stdout.flush()


def _materialise(plan: ScoringPlan, run: PlannedRun, root: Path) -> Path:
    """``work/code`` and ``work/home`` belong to the run; the log and jail spec beside them do not."""
    work = root / run.label
    shutil.rmtree(work, ignore_errors=True)
    (work / "home").mkdir(parents=True)
    for rel, text in plan.file_sets[run.files].items():
        target = work / "code" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    if plan.jail is not None:
        for sub in ("code", "home"):
            for dirpath, dirnames, filenames in os.walk(work / sub):
                for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                    os.chown(name, plan.jail.uid, plan.jail.gid)
    return work


def _jailed(argv: list[str], jail: JailSpec, work: Path, env: dict[str, str]) -> list[str]:
    spec = {
        **jail.model_dump(),
        "keep_ro": [*jail.keep_ro, *_data_dirs(env)],
        "keep_rw": [str(work)],
        "cwd": str(work / "code"),
    }
    path = work / "jail.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    return [*jail_module.UNSHARE, sys.executable, "-I", jail_module.__file__, str(path), "--", *argv]


def _data_dirs(env: dict[str, str]) -> list[str]:
    """Folders of the data globs the run reads: bound back read-only inside the jail."""
    return sorted(
        {str(Path(v).parent) for k, v in env.items() if k.startswith("NANOGPT_") and k.endswith("_FILES")}
    )


class Launcher(Protocol):
    """Runs one planned run from ``work/code`` and watches its output lines as they arrive."""

    async def __call__(
        self,
        run: PlannedRun,
        work: Path,
        env: dict[str, str],
        limits: ProcessLimits,
        label: str,
        on_line: LineWatcher,
    ) -> ProcessResult: ...


def _run_env(run: PlannedRun) -> dict[str, str]:
    """The record's launch env plus the scorer-chosen seed (the launcher adds HOME and caches)."""
    return {**run.env, "NANOGPT_SEED": str(run.seed), "PYTHONUNBUFFERED": "1"}


def fresh_home(home: str) -> dict[str, str]:
    """HOME and compile caches of one run: no cache replay across runs (docs/threats.md,
    'Work outside the clock')."""
    return {
        "HOME": home,
        "TORCHINDUCTOR_CACHE_DIR": f"{home}/inductor",
        "TRITON_CACHE_DIR": f"{home}/triton",
    }


def local_launcher(jail: JailSpec | None) -> Launcher:
    """The local way: a process group on this host, labelled for sweeping, jailed when asked."""

    async def launch(
        run: PlannedRun,
        work: Path,
        env: dict[str, str],
        limits: ProcessLimits,
        label: str,
        on_line: LineWatcher,
    ) -> ProcessResult:
        argv = [sys.executable if a == "{python}" else a for a in run.argv]
        full_env = inherited_env({**env, **fresh_home(str(work / "home"))})
        if jail is not None:
            argv = _jailed(argv, jail, work, full_env)
        return await run_process_group(
            argv,
            cwd=work / "code",
            env=full_env,
            limits=limits,
            label=label,
            log_path=work / "output.log",
            on_line=on_line,
        )

    return launch


class _Trajectory:
    """Progress lines as the scorer saw them, checked for the shape of real training."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, ProgressLine]] = []
        self.inconsistent: str | None = None

    def add(self, t: float, p: ProgressLine) -> None:
        if not self.lines:
            if p.step != 0:
                self.inconsistent = f"first progress line is step {p.step}, not step 0"
        else:
            prev = self.lines[-1][1]
            if (
                p.step <= prev.step
                or p.train_time_ms < prev.train_time_ms
                or p.total_steps != prev.total_steps
            ):
                self.inconsistent = self.inconsistent or (
                    f"step {prev.step} ({prev.train_time_ms:.0f}ms) followed by step {p.step} "
                    f"({p.train_time_ms:.0f}ms)"
                )
        self.lines.append((t, p))

    @property
    def step0_loss(self) -> float | None:
        return self.lines[0][1].val_loss if self.lines and self.lines[0][1].step == 0 else None


async def measure(
    plan: ScoringPlan,
    run: PlannedRun,
    index: int,
    root: Path,
    untrained: float | None = None,
    launch: Launcher | None = None,
    emit: Emit = _emit,
    isolation: str = "none",
) -> RunMeasurement:
    """One run, timed on this process's clock.

    ``untrained``: the step-0 loss of this session's first baseline run. A run that
    breaks a plausibility rule is stopped at once: it is disqualified anyway.
    ``isolation``: what confined the run, recorded with it.
    """
    work = _materialise(plan, run, root)
    launch = launch or local_launcher(plan.jail)
    env = _run_env(run)
    target_line: list[tuple[OutputLine, ProgressLine]] = []
    first_at: list[float] = []
    last: list[ProgressLine] = []
    last_emit = [0.0]
    trajectory = _Trajectory()
    jail_error: list[str] = []
    overclaimed: list[ProgressLine] = []
    trained_early: list[ProgressLine] = []
    curve: list[tuple[float, float]] = []
    at_target: list[cpu_share.CpuSample | None] = []

    def on_line(line: OutputLine) -> bool:
        if (
            plan.jail is not None
            and not trajectory.lines
            and line.text.startswith((_JAIL_FAILED, jail_module.UNSHARE_FAILED))
        ):
            jail_error.append(line.text)
            return True
        progress = parse_progress_line(line.text)
        if progress is None:
            return False
        last[:] = [progress]
        if not first_at:
            first_at.append(round(line.t, 4))
        trajectory.add(line.t, progress)
        if trajectory.inconsistent is not None:
            return True
        if progress.train_time_ms / 1000 > line.t + _CLOCK_SLACK_S:
            overclaimed.append(progress)
            return True
        if (
            progress.step == 0
            and untrained is not None
            and progress.val_loss < untrained - plan.step0_tolerance
        ):
            trained_early.append(progress)
            return True
        if math.isfinite(progress.val_loss):
            curve.append((round(line.t, 3), progress.val_loss))
        if len(curve) > _CURVE_POINTS:
            del curve[1:-1:2]
        if line.t - last_emit[0] >= _PROGRESS_EVERY_S:
            last_emit[0] = line.t
            emit(
                HarnessEvent(
                    event="progress",
                    label=run.label,
                    index=index,
                    total=len(plan.runs),
                    step=progress.step,
                    total_steps=progress.total_steps,
                    val_loss=progress.val_loss,
                    t=round(line.t, 3),
                )
            )
        if progress.val_loss <= plan.target_val_loss:
            at_target.append(cpu_share.sample())
            target_line.append((line, progress))
            return True
        return False

    limits = ProcessLimits(
        timeout_s=run.timeout_s,
        max_output_bytes=plan.max_output_bytes,
        memory_bytes=plan.memory_bytes,
        tail_bytes=_LOG_TAIL_BYTES,
    )
    at_launch = cpu_share.sample()
    result = await launch(run, work, env, limits, label_for(plan.session_id, "score", run.label), on_line)
    if jail_error:
        raise JailFailed(f"{run.label}: {jail_error[0]}")
    flags: list[Flag] = []
    reached = bool(target_line)
    if not reached:
        flags.append(Flag.DID_NOT_REACH_TARGET)
    if not last:
        flags.append(Flag.NO_PROGRESS)
    by_reason = {
        ExitReason.TIMED_OUT: Flag.TIMED_OUT,
        ExitReason.OUTPUT_LIMIT: Flag.OUTPUT_LIMIT,
        ExitReason.MEMORY_LIMIT: Flag.MEMORY_LIMIT,
    }
    if result.reason in by_reason:
        flags.append(by_reason[result.reason])
    elif result.reason is ExitReason.EXITED and result.returncode != 0 and not reached:
        flags.append(Flag.CRASHED)
    seen = target_line[0][1] if reached else (last[0] if last else None)
    seconds = launched = None
    if reached:
        launched = round(target_line[0][0].t, 4)
        seconds = round(target_line[0][0].t - first_at[0], 4)
    if overclaimed:
        flags.append(Flag.REPORTED_TIME_EXCEEDS_WALL)
    if trained_early:
        flags.append(Flag.TRAINED_BEFORE_CLOCK)
    if trajectory.inconsistent is not None:
        flags.append(Flag.INCONSISTENT_TRAJECTORY)
    share = None
    if reached and at_launch is not None and at_target[0] is not None and result.cpu is not None:
        share = cpu_share.share(at_launch, at_target[0], result.cpu.cpu_s, result.cpu.waited_s)
    return RunMeasurement(
        label=run.label,
        role=run.role,
        attempt_id=run.attempt_id,
        repeat=run.repeat,
        seed=run.seed,
        reason=result.reason.value,
        returncode=result.returncode,
        reached_target=reached,
        seconds_to_target=seconds,
        launch_to_target_s=launched,
        reported_train_ms=seen.train_time_ms if seen else None,
        val_loss=seen.val_loss if seen else None,
        step=seen.step if seen else None,
        step0_val_loss=trajectory.step0_loss,
        cpu_s=None if result.cpu is None or not reached else round(result.cpu.cpu_s, 3),
        cpu_share=share,
        progress_lines=len(trajectory.lines),
        first_progress_s=first_at[0] if first_at else None,
        wall_s=round(result.wall_s, 4),
        output_bytes=result.output_bytes,
        isolation=isolation,
        flags=flags,
        log_tail=result.tail + (f"\n[scorer] {trajectory.inconsistent}" if trajectory.inconsistent else ""),
        curve=curve,
    )


async def _timed(
    plan: ScoringPlan,
    run: PlannedRun,
    index: int,
    root: Path,
    untrained: float | None,
    launch: Launcher,
    emit: Emit,
    isolation: str,
) -> RunMeasurement:
    """Measure a run; time it again, from scratch, while others took the CPUs it needed.

    A contended time says how busy the machine was, not how fast the run is. Every
    run may be re-timed alike, so a submission gains nothing by it; a run contended
    on every try is flagged, and the flag is charged to the infrastructure.
    """
    for retimed in range(plan.contention_retries + 1):
        m = await measure(plan, run, index, root, untrained, launch, emit, isolation)
        # the run is dead (measure killed its group); nothing of it stays for the next one
        shutil.rmtree(root / run.label, ignore_errors=True)
        share = m.cpu_share
        if share is None or not share.contended(plan.max_lost_cores):
            return m.model_copy(update={"retimed": retimed})
        pause = plan.contention_backoff_s * 2**retimed if retimed < plan.contention_retries else None
        emit(
            HarnessEvent(
                event="run_contended",
                label=run.label,
                index=index,
                total=len(plan.runs),
                measurement=m,
                retry_in_s=pause,
            )
        )
        if pause:
            await asyncio.sleep(pause)
    return m.model_copy(update={"retimed": plan.contention_retries, "flags": [*m.flags, Flag.CONTENDED]})


def _missed_at_its_seed(m: RunMeasurement) -> bool:
    """A control (a trusted record) ran cleanly to its end, short of the target."""
    return m.role is not Role.SUBMISSION and m.flags == [Flag.DID_NOT_REACH_TARGET]


async def _warm_up(plan: ScoringPlan, run: PlannedRun, root: Path, launch: Launcher) -> None:
    """Launch the first (trusted, baseline) run until its first progress line, untimed.

    Without it the first timed run of a session alone pays the cold start (page cache,
    first imports, CPU clocks): with one repeat that skews the baseline by ~10 %.
    """
    work = _materialise(plan, run, root)
    env = _run_env(run)
    limits = ProcessLimits(
        timeout_s=run.timeout_s, max_output_bytes=plan.max_output_bytes, memory_bytes=plan.memory_bytes
    )
    label = label_for(plan.session_id, "score", "warmup")
    await launch(run, work, env, limits, label, lambda line: parse_progress_line(line.text) is not None)
    shutil.rmtree(root, ignore_errors=True)


async def run_plan(
    plan: ScoringPlan,
    out_dir: Path,
    *,
    launch: Launcher | None = None,
    emit: Emit = _emit,
    environment: dict[str, Any] | None = None,
    isolation: str | None = None,
) -> HarnessResult:
    """``launch``: how runs start (default: local process groups, jailed when the plan says so).
    ``environment``: facts of the software environment (e.g. image digests) for the fingerprint.
    ``isolation``: what confines the runs when ``launch`` does (e.g. "container"), recorded on each.
    """
    hardware = {**fingerprint.collect(), **(environment or {})}
    if isolation is None:
        isolation = "jail" if plan.jail is not None else "none"
    launch = launch or local_launcher(plan.jail)
    if plan.warmup and plan.runs:
        emit(HarnessEvent(event="warmup", label=plan.runs[0].label, index=0, total=len(plan.runs)))
        await _warm_up(plan, plan.runs[0], out_dir / "warmup", launch)
    measurements: list[RunMeasurement] = []
    untrained: float | None = None
    total = len(plan.runs)
    for repeat in sorted({r.repeat for r in plan.runs}):
        runs = [(i, r) for i, r in enumerate(plan.runs) if r.repeat == repeat]
        for redraw in range(plan.seed_redraws + 1):
            done: list[RunMeasurement] = []
            for index, run in runs:
                emit(HarnessEvent(event="run_started", label=run.label, index=index, total=total))
                m = await _timed(plan, run, index, out_dir / "runs", untrained, launch, emit, isolation)
                if untrained is None and run.role is Role.BASELINE and not m.flags:
                    untrained = m.step0_val_loss
                done.append(m)
                emit(
                    HarnessEvent(
                        event="run_finished", label=run.label, index=index, total=total, measurement=m
                    )
                )
                if redraw < plan.seed_redraws and _missed_at_its_seed(m):
                    break
            else:
                break
            # A control missed at this seed: the whole repeat, submissions timed at the old
            # seed included, runs again at a new one, so every comparison stays paired
            seed = secrets.randbelow(2**31)
            emit(
                HarnessEvent(
                    event="seed_redrawn", label=m.label, index=index, total=total, measurement=m, seed=seed
                )
            )
            runs = [(i, r.model_copy(update={"seed": seed})) for i, r in runs]
        measurements += done
    now = {**fingerprint.collect(), **(environment or {})}
    if fingerprint.fingerprint_hash(now) != fingerprint.fingerprint_hash(hardware):
        # the hardware changed under the session (a device appeared or vanished): its times don't compare
        raise RuntimeError("hardware fingerprint changed during the scoring session")
    result = HarnessResult(fingerprint=hardware, measurements=measurements)
    (out_dir / "results.json").write_text(result.model_dump_json(indent=1))
    return result


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.exit("usage: python -m orchestrator.scorer.harness PLAN_JSON OUT_DIR")
    plan = ScoringPlan.model_validate_json(Path(args[0]).read_text())
    asyncio.run(run_plan(plan, Path(args[1])))


if __name__ == "__main__":
    main()

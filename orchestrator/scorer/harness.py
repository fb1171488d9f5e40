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
import shutil
import sys
from pathlib import Path

from orchestrator.runtime.process import (
    ExitReason,
    OutputLine,
    ProcessLimits,
    inherited_env,
    label_for,
    run_process_group,
)
from orchestrator.runtime.progress import ProgressLine, parse_progress_line
from orchestrator.scorer import fingerprint
from orchestrator.scorer.plan import (
    Flag,
    HarnessEvent,
    HarnessResult,
    PlannedRun,
    RunMeasurement,
    ScoringPlan,
)

# A reported train_time may lead the scorer's clock by this much (line buffering, clock
# granularity) before it counts as claiming more time than passed.
_CLOCK_SLACK_S = 0.5
_PROGRESS_EVERY_S = 5.0
_LOG_TAIL_BYTES = 8 * 1024


def _emit(event: HarnessEvent) -> None:
    sys.stdout.write(event.model_dump_json(exclude_none=True) + "\n")
    sys.stdout.flush()


def _materialise(plan: ScoringPlan, run: PlannedRun, root: Path) -> Path:
    work = root / run.label
    shutil.rmtree(work, ignore_errors=True)
    (work / "home").mkdir(parents=True)
    for rel, text in plan.file_sets[run.files].items():
        target = work / "code" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return work


async def measure(plan: ScoringPlan, run: PlannedRun, index: int, root: Path) -> RunMeasurement:
    work = _materialise(plan, run, root)
    argv = [sys.executable if a == "{python}" else a for a in run.argv]
    home = work / "home"
    env = inherited_env(
        {
            **run.env,
            "HOME": str(home),
            # fresh compile caches per run: no cache replay across runs (THREATS.md #11)
            "TORCHINDUCTOR_CACHE_DIR": str(home / "inductor"),
            "TRITON_CACHE_DIR": str(home / "triton"),
            "NANOGPT_SEED": str(run.seed),
            "PYTHONUNBUFFERED": "1",
        }
    )
    target_line: list[tuple[OutputLine, ProgressLine]] = []
    first_at: list[float] = []
    last: list[ProgressLine] = []
    last_emit = [0.0]

    def on_line(line: OutputLine) -> bool:
        progress = parse_progress_line(line.text)
        if progress is None:
            return False
        last[:] = [progress]
        if not first_at:
            first_at.append(round(line.t, 4))
        if line.t - last_emit[0] >= _PROGRESS_EVERY_S:
            last_emit[0] = line.t
            _emit(
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
            target_line.append((line, progress))
            return True
        return False

    result = await run_process_group(
        argv,
        cwd=work / "code",
        env=env,
        limits=ProcessLimits(
            timeout_s=run.timeout_s,
            max_output_bytes=plan.max_output_bytes,
            memory_bytes=plan.memory_bytes,
            tail_bytes=_LOG_TAIL_BYTES,
        ),
        label=label_for(plan.session_id, "score", run.label),
        log_path=work / "output.log",
        on_line=on_line,
    )
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
    seconds = round(target_line[0][0].t, 4) if reached else None
    if reached and seen is not None and seen.train_time_ms / 1000 > seconds + _CLOCK_SLACK_S:
        flags.append(Flag.REPORTED_TIME_EXCEEDS_WALL)
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
        reported_train_ms=seen.train_time_ms if seen else None,
        val_loss=seen.val_loss if seen else None,
        step=seen.step if seen else None,
        first_progress_s=first_at[0] if first_at else None,
        wall_s=round(result.wall_s, 4),
        output_bytes=result.output_bytes,
        flags=flags,
        log_tail=result.tail,
    )


async def run_plan(plan: ScoringPlan, out_dir: Path) -> HarnessResult:
    hardware = fingerprint.collect()
    measurements = []
    for index, run in enumerate(plan.runs):
        _emit(HarnessEvent(event="run_started", label=run.label, index=index, total=len(plan.runs)))
        m = await measure(plan, run, index, out_dir / "runs")
        measurements.append(m)
        _emit(
            HarnessEvent(
                event="run_finished", label=run.label, index=index, total=len(plan.runs), measurement=m
            )
        )
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

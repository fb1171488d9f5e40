"""Calibrate the GPU mini track on a GPU host: loss curves, target and published times.

Each record runs its full schedule under torchrun with several seeds; every progress line
is timestamped on arrival (the scorer's clock). The target is the worst seed's loss of the
baseline (r1) at ``--target-at`` of its schedule (default 0.4: just past the drop where it
learns to copy, the phase rotary embeddings and Muon speed up most; later every record
approaches the corpus's entropy floor and the records no longer differ), so the baseline
reaches it with time to spare; each record's published time is its median reported
train_time at the first progress line at or below the target.

    python benchmarks/gpu_calibrate.py --seeds 0,1 [--records 1,2,3] [--out FILE]
        [--iterations r2=1500,r3=1000] [--write-manifests DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.catalog.catalog import Catalog
from orchestrator.catalog.data import TrackData, ensure_track_data
from orchestrator.runtime.process_group import (
    OutputLine,
    ProcessLimits,
    inherited_env,
    label_for,
    run_process_group,
)
from orchestrator.runtime.progress import parse_progress_line
from orchestrator.settings import Settings

TRACK = "gpu_mini"


@dataclass
class Curve:
    record: int
    seed: int
    iterations: int | None
    points: list[tuple[int, float, float, float]] = field(default_factory=list)
    """(step, val_loss, train_time_s, arrival_s on our clock)."""
    wall_s: float = 0.0
    returncode: int | None = None
    tail: str = ""

    def crossing(self, target: float) -> tuple[int, float, float] | None:
        """(step, train_time_s, arrival_s) of the first point at or below ``target``."""
        for step, loss, train_s, t in self.points:
            if loss <= target:
                return step, train_s, t
        return None


async def run_curve(
    record_dir: Path,
    data: TrackData,
    val_tokens: int,
    seed: int,
    iters: int | None,
    stop: Callable[[int, int, float], bool],
    smoke: bool = False,
) -> Curve:
    curve = Curve(record=int(record_dir.name[1:]), seed=seed, iterations=iters)
    env = {
        **data.env(val_tokens=val_tokens, heldout=True),
        "NANOGPT_SEED": str(seed),
        "PYTHONUNBUFFERED": "1",
    }
    if smoke:  # a CPU check of this script itself, not a calibration
        env |= {"NANOGPT_SMOKE": "1", "NANOGPT_NUM_ITERATIONS": "20", "NANOGPT_VAL_TOKENS": "2048"}
    code = record_dir / "train_gpt.py"
    if iters is not None:
        # a shorter schedule is a copy of the script with another default (never an env knob)
        source = code.read_text()
        source, n = re.subn(r'("NANOGPT_NUM_ITERATIONS", ")\d+(")', rf"\g<1>{iters}\g<2>", source)
        assert n == 1, "num_iterations default not found"
        work = Path(f"/tmp/gpu-calibrate-{record_dir.name}-{iters}")
        work.mkdir(exist_ok=True)
        (work / "train_gpt.py").write_text(source)
    else:
        work = record_dir

    def on_line(line: OutputLine) -> bool:
        p = parse_progress_line(line.text)
        if p is None:
            return False
        curve.points.append((p.step, p.val_loss, p.train_time_ms / 1000, round(line.t, 3)))
        return stop(p.step, p.total_steps, p.val_loss)

    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=1",
        "train_gpt.py",
    ]
    result = await run_process_group(
        argv,
        cwd=work,
        env=inherited_env({**env, "HOME": str(Path("/tmp") / f"home-{time.monotonic_ns()}")}),
        limits=ProcessLimits(timeout_s=600),
        label=label_for("calibrate", record_dir.name),
        on_line=on_line,
    )
    curve.wall_s, curve.returncode, curve.tail = (
        round(result.wall_s, 2),
        result.returncode,
        result.tail[-1500:],
    )
    return curve


def pick_target(r1: list[Curve], target_at: float, total_steps: int) -> float:
    """The worst seed's loss at ``target_at`` of the baseline's schedule, rounded up to 0.01."""
    at = [[loss for step, loss, _, _ in c.points if step <= target_at * total_steps][-1] for c in r1]
    return round(-(-max(at) * 100 // 1) / 100, 2)


def summarise(curves: list[Curve], target: float) -> dict[str, object]:
    rows = {}
    for c in curves:
        key = f"r{c.record}" + (f"@{c.iterations}" if c.iterations else "")
        hit = c.crossing(target)
        rows.setdefault(key, []).append(
            {
                "seed": c.seed,
                "final_loss": c.points[-1][1] if c.points else None,
                "cross_step": hit[0] if hit else None,
                "cross_train_s": hit[1] if hit else None,
                "cross_arrival_s": hit[2] if hit else None,
                "startup_s": c.points[0][3] if c.points else None,
                "wall_s": c.wall_s,
            }
        )
    published = {}
    for key, runs in rows.items():
        times = [r["cross_train_s"] for r in runs]
        if all(t is not None for t in times):
            published[key] = {
                "train_s": round(statistics.median(times), 2),
                "steps": int(statistics.median(r["cross_step"] for r in runs)),
            }
    return {"target_val_loss": target, "runs": rows, "published": published}


def write_manifests(records_dir: Path, out_dir: Path, target: float, published: dict) -> None:
    """A copy of records/ with the calibrated target and published times (for the suite)."""
    import shutil

    shutil.copytree(records_dir, out_dir, dirs_exist_ok=True)
    for index in (1, 2, 3):
        path = out_dir / TRACK / f"r{index}" / "record.toml"
        text = path.read_text()
        text = re.sub(r"(?m)^target_val_loss = .*$", f"target_val_loss = {target}", text)
        pub = published.get(f"r{index}")
        if pub:
            text = re.sub(
                r"(?m)^published_train_seconds = .*$", f"published_train_seconds = {pub['train_s']}", text
            )
            text = re.sub(r"(?m)^published_steps = .*$", f"published_steps = {pub['steps']}", text)
        path.write_text(text)
        tomllib.loads(text)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--records", default="1,2,3")
    parser.add_argument("--iterations", default="", help="extra shorter schedules, e.g. r2=1500,r3=1000")
    parser.add_argument("--target-at", type=float, default=0.4)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--write-manifests", type=Path)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU runs: checks this script only")
    args = parser.parse_args()

    settings = Settings()
    catalog = Catalog.load(settings.records_dir, settings.home / "cache" / "records")
    track = catalog.track(TRACK)
    data = ensure_track_data(track, settings.data_dir, print)
    by_index = {r.manifest.index: r for r in track.records}
    jobs = [(i, s, None) for s in map(int, args.seeds.split(",")) for i in map(int, args.records.split(","))]
    for item in filter(None, args.iterations.split(",")):
        name, iters = item.split("=")
        jobs.append((int(name[1:]), 0, int(iters)))
    curves: list[Curve] = []
    target: float | None = None
    total_r1 = int(
        re.search(r'"NANOGPT_NUM_ITERATIONS", "(\d+)"', (by_index[1].files_dir / "train_gpt.py").read_text())[
            1
        ]
    )
    # the baseline first, stopped past the target point; the others stop at the target
    for index, seed, iters in sorted(jobs, key=lambda j: j[0] != 1):
        if index != 1 and target is None:
            r1 = [c for c in curves if c.record == 1 and c.points]
            target = pick_target(r1, args.target_at, r1[0].points[-1][0] if args.smoke else total_r1)
            print(f"target val_loss {target}", flush=True)
        record = by_index[index]

        def stop(
            step: int, total: int, loss: float, index: int = index, target: float | None = target
        ) -> bool:
            if index == 1:
                return step >= (args.target_at + 0.1) * total
            return target is not None and loss <= target

        c = await run_curve(
            record.files_dir, data, record.manifest.data.val_tokens, seed, iters, stop, args.smoke
        )
        curves.append(c)
        last = c.points[-1] if c.points else None
        print(
            f"r{index} seed {seed} iters {iters or 'default'}: rc {c.returncode} wall {c.wall_s}s "
            f"startup {c.points[0][3] if c.points else '-'}s last {last}",
            flush=True,
        )
        if c.returncode != 0:
            print(c.tail, flush=True)
    if target is None:
        target = pick_target([c for c in curves if c.record == 1 and c.points], args.target_at, total_r1)
    summary = summarise([c for c in curves if c.points], target)
    summary["curves"] = [asdict(c) for c in curves]
    print(json.dumps({k: v for k, v in summary.items() if k != "curves"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    if args.write_manifests:
        write_manifests(
            settings.records_dir, args.write_manifests, summary["target_val_loss"], summary["published"]
        )


if __name__ == "__main__":
    asyncio.run(main())

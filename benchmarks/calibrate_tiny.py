"""Calibrate the tiny CPU track: run each record through torchrun and tabulate timings.

Usage (from the repository root):
    .venv/bin/python benchmarks/calibrate_tiny.py --repeats 3 --records 1,2,3,4

Repeat i runs with NANOGPT_SEED=i, so three repeats cover the seeds 0, 1, 2 a record must
pass. The corpus is the default SynthSpec(), generated once into --data-dir. The
published_train_seconds of a record is the median reported train_time in this table.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from orchestrator.catalog.synth import SynthSpec, generate_corpus

REPO = Path(__file__).resolve().parent.parent
TRACK_DIR = REPO / "records" / "tiny"
_PROGRESS = re.compile(r"step:(\d+)/(\d+) val_loss:(\S+) train_time:(\d+)ms")


@dataclass(frozen=True)
class Run:
    record: int
    seed: int
    wall_s: float
    train_s: float
    val_loss: float
    steps: int


def ensure_corpus(data_dir: Path) -> None:
    spec = SynthSpec()
    marker = data_dir / "SPEC.json"
    if marker.exists() and marker.read_text() == spec.model_dump_json():
        return
    started = time.perf_counter()
    generate_corpus(data_dir, spec)
    marker.write_text(spec.model_dump_json())
    print(f"generated the corpus in {time.perf_counter() - started:.2f}s", flush=True)


def run_record(index: int, seed: int, data_dir: Path, val_file: str) -> Run:
    record_dir = TRACK_DIR / f"r{index}"
    manifest = tomllib.loads((record_dir / "record.toml").read_text())
    launch = manifest["launch"]
    env = {
        **os.environ,
        **launch.get("env", {}),
        "NANOGPT_TRAIN_FILES": str(data_dir / "train_*.bin"),
        "NANOGPT_VAL_FILES": str(data_dir / val_file),
        "NANOGPT_VAL_TOKENS": str(manifest["data"]["val_tokens"]),
        "NANOGPT_SEED": str(seed),
    }
    env.pop("NANOGPT_NUM_ITERATIONS", None)
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={launch['nproc']}", launch["script"],
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=record_dir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"r{index} seed {seed} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    last = _PROGRESS.findall(proc.stdout)[-1]
    return Run(index, seed, wall, int(last[3]) / 1000, float(last[2]), int(last[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per record (seed = i)")
    parser.add_argument("--records", default="1,2,3,4", help="comma-separated record indices")
    parser.add_argument("--data-dir", type=Path, default=REPO / ".speedrun" / "calibrate-tiny")
    parser.add_argument("--heldout", action="store_true", help="validate on the scorer's held-out shard")
    args = parser.parse_args()
    records = [int(r) for r in args.records.split(",")]
    ensure_corpus(args.data_dir)
    val_file = "val_heldout_000000.bin" if args.heldout else "val_000000.bin"

    print(f"{'record':>6} {'seed':>4} {'wall_s':>7} {'train_s':>7} {'val_loss':>8} {'steps':>5} {'load':>5}")
    runs: dict[int, list[Run]] = {index: [] for index in records}
    # Records take turns so that drifts in machine speed hit them all alike.
    for seed in range(args.repeats):
        for index in records:
            load = os.getloadavg()[0]  # > ~0.5 here means someone else shares the cores
            run = run_record(index, seed, args.data_dir, val_file)
            runs[index].append(run)
            print(
                f"{f'r{index}':>6} {seed:>4} {run.wall_s:>7.1f} {run.train_s:>7.1f} "
                f"{run.val_loss:>8.4f} {run.steps:>5} {load:>5.2f}",
                flush=True,
            )

    print("\nsummary (median [min-max]); speedup = previous median train_s / this one")
    previous: float | None = None
    for index in records:
        rs = runs[index]
        target = tomllib.loads((TRACK_DIR / f"r{index}" / "record.toml").read_text())["target_val_loss"]
        walls, trains = [r.wall_s for r in rs], [r.train_s for r in rs]
        med = statistics.median(trains)
        worst = max(r.val_loss for r in rs)
        speedup = f"{previous / med:.2f}x" if previous else "-"
        print(
            f"r{index}: wall {statistics.median(walls):.1f}s [{min(walls):.1f}-{max(walls):.1f}]"
            f"  train {med:.1f}s [{min(trains):.1f}-{max(trains):.1f}]"
            f"  worst val_loss {worst:.4f} (target {target}, "
            f"{'all below' if worst < target else 'MISSED'})  steps {rs[0].steps}"
            f"  speedup {speedup}"
        )
        previous = med


if __name__ == "__main__":
    main()

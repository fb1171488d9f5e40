"""Launch a record's training script with torchrun, as the tests of the CPU tracks do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RANK_EXIT = Path(__file__).with_name("rank_without_finalizing.py")


def torchrun(record: Path, nproc: int, env: dict[str, str], timeout_s: float) -> str:
    """Run ``record/train_gpt.py`` on ``nproc`` ranks; its stdout, once it exited cleanly.

    Several ranks end through RANK_EXIT, which steps around a gloo abort at Python's exit.
    """
    script = [str(RANK_EXIT), "train_gpt.py"] if nproc > 1 else ["train_gpt.py"]
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", *script]  # fmt: skip
    proc = subprocess.run(argv, cwd=record, env=env, capture_output=True, text=True, timeout=timeout_s)
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-3000:]
    return proc.stdout

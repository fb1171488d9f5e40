"""Training data for a track: where the shards are, generated or downloaded on first use.

Two validation shards exist per track: the one sandboxes see during experiments,
and a held-out one only the scorer mounts (THREATS.md #6).
"""

from __future__ import annotations

import glob
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.catalog import fineweb
from orchestrator.catalog.catalog import Track
from orchestrator.catalog.manifest import FinewebData, SyntheticData
from orchestrator.catalog.synth import SynthSpec
from orchestrator.domain import Progress
from orchestrator.errors import NotFound

_DONE = "COMPLETE"


@dataclass(frozen=True)
class TrackData:
    train_glob: str
    val_glob: str
    heldout_val_glob: str

    def env(self, *, val_tokens: int, heldout: bool) -> dict[str, str]:
        """The NANOGPT_* variables every record reads its data from."""
        return {
            "NANOGPT_TRAIN_FILES": self.train_glob,
            "NANOGPT_VAL_FILES": self.heldout_val_glob if heldout else self.val_glob,
            "NANOGPT_VAL_TOKENS": str(val_tokens),
        }


def ensure_track_data(track: Track, data_dir: Path, progress: Progress | None = None) -> TrackData:
    """Raises: NotFound when the track's data cannot be produced here."""
    spec = track.manifest.data
    if isinstance(spec, SyntheticData):
        return _synthetic(data_dir / track.id, spec.spec, progress)
    assert isinstance(spec, FinewebData)
    root = fineweb.dataset_dir(data_dir, spec)
    if not (root / fineweb.FETCHED).exists() or not (root / fineweb.AGENTS_VAL).exists():
        raise NotFound(
            f"track {track.id}: FineWeb shards are not in {root}; "
            f"run `speedrun data fetch --track {track.id}` first"
        )
    return TrackData(
        train_glob=str(root / spec.train_glob),
        val_glob=str(root / fineweb.AGENTS_VAL),
        heldout_val_glob=str(root / spec.val_file),
    )


def _layout(root: Path) -> TrackData:
    return TrackData(
        train_glob=str(root / "train_*.bin"),
        val_glob=str(root / "val_0*.bin"),
        heldout_val_glob=str(root / "val_heldout_*.bin"),
    )


def _synthetic(root: Path, spec: SynthSpec, progress: Progress | None) -> TrackData:
    from orchestrator.catalog.synth import generate_corpus

    marker = root / _DONE
    wanted = spec.model_dump_json()
    if not marker.exists() or marker.read_text() != wanted:
        if progress is not None:
            progress(f"generating the synthetic corpus in {root}")
        root.mkdir(parents=True, exist_ok=True)
        generate_corpus(root, spec, progress)
        marker.write_text(wanted)
    return _layout(root)


def named_data_files(env: Mapping[str, str], data_dir: Path) -> list[Path]:
    """The data files under ``data_dir`` that ``env``'s values name (paths or globs).

    Container backends mount exactly these, read-only: a sandbox's env names the
    agent-visible validation shard, a scorer run's the held-out one (THREATS.md #6).
    """
    root = str(data_dir)
    files: set[str] = set()
    for value in env.values():
        if value.startswith(root):
            files.update(p for p in glob.glob(value) if Path(p).is_file())
    return [Path(f) for f in sorted(files)]

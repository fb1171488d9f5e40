"""FineWeb token shards from a Hugging Face dataset repository: download, verify, lay out.

Downloads use huggingface_hub's metadata request and transfer code (``HF_ENDPOINT``
selects the hub); the transfer checks the size the server announced and resumes from a
partial file after an interruption. Every shard is then checked against the shard format
(header, and a file size that matches the header's token count) before it is kept.

Layout of ``<data_dir>/fineweb/<owner>--<name>/``: the repository's own file names,
``fetched.json`` (what was verified, with sizes), and ``val_agents_000000.bin``, the second
half of the official validation shard: agents validate on it during experiments, while
the scorer validates on the official shard's leading tokens, the ones the published
times were measured on (docs/threats.md, 'Reading held-out data').
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.catalog.manifest import FinewebData
from orchestrator.catalog.shards import ShardHeader, read_shard, read_shard_header, write_shard
from orchestrator.domain import Progress
from orchestrator.errors import DataFormatError, FetchError, NotFound, SourceUnreachable, UsageError

FETCHED = "fetched.json"
PARTIAL_DIR = ".partial"
AGENTS_VAL = "val_agents_000000.bin"


@dataclass(frozen=True)
class ShardCheck:
    name: str
    ok: bool
    bytes: int | None
    tokens: int | None
    problem: str | None = None


def dataset_dir(data_dir: Path, spec: FinewebData) -> Path:
    return data_dir / "fineweb" / spec.repo_id.replace("/", "--")


def shard_names(spec: FinewebData, train_shards: int) -> list[str]:
    """The validation shard first, then train shards 1..N."""
    return [spec.val_file, *(spec.train_file(i) for i in range(1, train_shards + 1))]


def _fetched(root: Path) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads((root / FETCHED).read_text()).items()}
    except FileNotFoundError:
        return {}
    except (ValueError, AttributeError) as e:
        raise DataFormatError(f"{root / FETCHED}: unreadable ({e}); delete it and fetch again") from e


def _record_fetched(root: Path, name: str, size: int) -> None:
    fetched = _fetched(root)
    fetched[name] = size
    tmp = root / f".{FETCHED}.tmp"
    tmp.write_text(json.dumps(dict(sorted(fetched.items())), indent=1))
    tmp.replace(root / FETCHED)


def _check(path: Path) -> ShardHeader:
    """Raises: DataFormatError naming the shard and what is wrong with it."""
    return read_shard_header(path)


def _is_network_error(e: BaseException) -> bool:
    """Offline, refused, timed out or cut off. huggingface_hub has used requests, httpx and
    httpx2 across versions, so this goes by the exception family's names."""
    names = {cls.__name__ for cls in type(e).__mro__}
    return isinstance(e, OSError) or bool(names & {"TransportError", "ConnectionError", "Timeout"})


def _download(spec: FinewebData, name: str, root: Path, endpoint: str | None, report: Progress) -> Path:
    """One file through huggingface_hub's metadata and transfer code, into ``.partial/``.

    The partial file is named by the file and its ETag, so a rerun resumes it with a Range
    request (huggingface_hub's own downloads restart from zero in a new process), and a
    file that changed upstream never mixes with an old partial one.
    """
    try:
        import huggingface_hub
        from huggingface_hub import errors as hf_errors
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers
    except ImportError:
        raise UsageError(
            "downloading FineWeb needs huggingface_hub: pip install 'speedrun-orchestrator[data]'"
        ) from None

    hub = endpoint or huggingface_hub.constants.ENDPOINT
    url = huggingface_hub.hf_hub_url(
        spec.repo_id, name, repo_type="dataset", revision=spec.revision, endpoint=endpoint
    )
    partial: Path | None = None
    try:
        meta = huggingface_hub.get_hf_file_metadata(url)
        tag = re.sub(r"[^A-Za-z0-9]", "", meta.etag or "")[:16] or "unversioned"
        partial = root / PARTIAL_DIR / f"{name}.{tag}.part"
        partial.parent.mkdir(parents=True, exist_ok=True)
        for stale in partial.parent.glob(f"{name}.*.part"):
            if stale != partial:
                stale.unlink()
        if meta.size is not None and partial.exists() and partial.stat().st_size > meta.size:
            partial.unlink()
        with partial.open("ab") as f:
            resume = f.tell()
            if resume:
                report(f"{name}: resuming at byte {resume:,} of {meta.size or 0:,}")
            http_get(
                meta.location,
                f,
                resume_size=resume,
                headers=build_hf_headers(),
                expected_size=meta.size,
                displayed_filename=name,
            )
    except (hf_errors.EntryNotFoundError, hf_errors.RepositoryNotFoundError) as e:
        raise FetchError(f"{spec.repo_id}@{spec.revision} has no file {name}: {e}") from e
    except hf_errors.HfHubHTTPError as e:
        raise FetchError(f"downloading {name} from {spec.repo_id} failed: {e}") from e
    except Exception as e:
        if not _is_network_error(e):
            raise
        if partial is None:
            raise SourceUnreachable(
                f"cannot reach {hub} to download {name} from {spec.repo_id} (offline or unreachable); "
                f"shards already verified in {root} are kept"
            ) from e
        raise SourceUnreachable(
            f"download of {name} from {hub} broke off ({e}); run the command again to resume"
        ) from e
    target = root / name
    partial.replace(target)
    return target


def fetch_shards(
    spec: FinewebData,
    root: Path,
    train_shards: int,
    *,
    endpoint: str | None = None,
    progress: Progress | None = None,
) -> list[ShardCheck]:
    """Download the val shard and train shards 1..N into ``root``, verifying each one.

    Shards already verified are skipped; an interrupted download resumes where it stopped.

    Raises:
        SourceUnreachable: offline or the hub is unreachable (verified shards are kept).
        DataFormatError: a downloaded shard is corrupt; it is deleted, never kept.
        FetchError: the repository lacks a file, or another download failure.
    """
    if train_shards < 1:
        raise UsageError("--shards must be at least 1")
    report = progress or (lambda _msg: None)
    root.mkdir(parents=True, exist_ok=True)
    names = shard_names(spec, train_shards)
    checks: list[ShardCheck] = []
    for n, name in enumerate(names, 1):
        path = root / name
        known = _fetched(root).get(name)
        if known is not None and path.is_file() and path.stat().st_size == known:
            header = _check(path)
            checks.append(ShardCheck(name, True, known, header.num_tokens))
            report(f"[{n}/{len(names)}] {name}: already verified")
            continue
        report(f"[{n}/{len(names)}] {name}: downloading from {spec.repo_id}")
        path = _download(spec, name, root, endpoint, report)
        try:
            header = _check(path)
        except DataFormatError as e:
            path.unlink(missing_ok=True)
            raise DataFormatError(
                f"{name} downloaded from {spec.repo_id} is corrupt and was deleted: {e}"
            ) from None
        size = path.stat().st_size
        _record_fetched(root, name, size)
        checks.append(ShardCheck(name, True, size, header.num_tokens))
        report(f"[{n}/{len(names)}] {name}: verified ({header.num_tokens:,} tokens, {size:,} bytes)")
    _write_agents_val(root / spec.val_file, root / AGENTS_VAL)
    return checks


def _write_agents_val(official: Path, out: Path) -> None:
    tokens = read_shard(official)
    write_shard(out, tokens[tokens.size // 2 :])


def verify_shards(spec: FinewebData, root: Path, train_shards: int | None = None) -> list[ShardCheck]:
    """Check every fetched shard's header and size (and, given N, that shards 1..N are present).

    Never raises for a bad shard: the caller decides; see ``problems``.
    Raises: NotFound when nothing was fetched into ``root``.
    """
    fetched = _fetched(root)
    if not fetched:
        raise NotFound(f"no FineWeb shards in {root}; run `speedrun data fetch` first")
    wanted = set(fetched) | (set(shard_names(spec, train_shards)) if train_shards else set())
    checks = []
    for name in sorted(wanted):
        path = root / name
        if not path.is_file():
            checks.append(ShardCheck(name, False, None, None, "missing"))
            continue
        size = path.stat().st_size
        try:
            header = _check(path)
        except DataFormatError as e:
            checks.append(ShardCheck(name, False, size, None, str(e)))
            continue
        if name in fetched and size != fetched[name]:
            problem = f"size {size} differs from the {fetched[name]} bytes verified at download"
            checks.append(ShardCheck(name, False, size, header.num_tokens, problem))
            continue
        checks.append(ShardCheck(name, True, size, header.num_tokens))
    return checks


def problems(checks: list[ShardCheck]) -> list[str]:
    return [f"{c.name}: {c.problem}" for c in checks if not c.ok]


def as_dicts(checks: list[ShardCheck]) -> list[dict[str, object]]:
    return [asdict(c) for c in checks]

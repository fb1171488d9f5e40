from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from orchestrator.catalog.shards import read_shard
from orchestrator.catalog.synth import EOT, CorpusFiles, SynthSpec, generate_corpus

SMALL = SynthSpec(tokens_per_shard=30_000, train_shards=2, val_tokens=20_000)


def _all_files(files: CorpusFiles) -> list[Path]:
    return [*files.train, files.val, files.val_heldout]


def _bigram_loss(train: np.ndarray, test: np.ndarray, vocab: int) -> float:
    counts = np.bincount(train[:-1] * vocab + train[1:], minlength=vocab * vocab)
    probs = counts.reshape(vocab, vocab) + 0.1
    probs /= probs.sum(axis=1, keepdims=True)
    return float(-np.log(probs[test[:-1], test[1:]]).mean())


def test_writes_the_expected_files(tmp_path: Path) -> None:
    messages: list[str] = []
    files = generate_corpus(tmp_path, SMALL, progress=messages.append)

    assert [p.name for p in files.train] == ["train_000000.bin", "train_000001.bin"]
    assert files.val.name == "val_000000.bin"
    assert files.val_heldout.name == "val_heldout_000000.bin"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in _all_files(files))
    assert [read_shard(p).size for p in _all_files(files)] == [30_000, 30_000, 20_000, 20_000]
    assert len(messages) >= 4


def test_same_spec_gives_byte_identical_files(tmp_path: Path) -> None:
    a = generate_corpus(tmp_path / "a", SMALL)
    b = generate_corpus(tmp_path / "b", SMALL)
    for pa, pb in zip(_all_files(a), _all_files(b), strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_other_seed_gives_other_text(tmp_path: Path) -> None:
    a = generate_corpus(tmp_path / "a", SMALL)
    b = generate_corpus(tmp_path / "b", SMALL.model_copy(update={"seed": SMALL.seed + 1}))
    assert a.train[0].read_bytes() != b.train[0].read_bytes()


def test_tokens_stay_in_vocab_and_documents_are_delimited(tmp_path: Path) -> None:
    spec = SMALL.model_copy(update={"vocab_size": 300})
    for path in _all_files(generate_corpus(tmp_path, spec)):
        tokens = read_shard(path)
        assert int(tokens.max()) < 300
        assert tokens[0] == EOT
        # documents run doc_len_min..doc_len_max tokens between end-of-text markers
        gaps = np.diff(np.flatnonzero(tokens == EOT))
        assert gaps.min() >= spec.doc_len_min and gaps.max() <= spec.doc_len_max + 1


def test_heldout_is_different_text_from_the_same_distribution(tmp_path: Path) -> None:
    files = generate_corpus(tmp_path, SMALL)
    val, heldout = read_shard(files.val), read_shard(files.val_heldout)
    assert (val != heldout).mean() > 0.9

    train = np.concatenate([read_shard(p) for p in files.train]).astype(np.int64)
    loss_val = _bigram_loss(train, val.astype(np.int64), SMALL.vocab_size)
    loss_heldout = _bigram_loss(train, heldout.astype(np.int64), SMALL.vocab_size)
    assert abs(loss_val - loss_heldout) < 0.1
    # a bigram model fitted on train beats uniform guessing by a wide margin
    assert loss_val < np.log(SMALL.vocab_size) - 2.0


def test_copies_make_long_repeats_common(tmp_path: Path) -> None:
    """Induction structure: many 8-grams recur within the previous copy_max_offset tokens."""
    tokens = read_shard(generate_corpus(tmp_path, SMALL).val).astype(np.int64)
    n, horizon = 8, SMALL.copy_max_offset
    grams = [tuple(g) for g in np.lib.stride_tricks.sliding_window_view(tokens, n).tolist()]
    repeated = [grams[i] in set(grams[max(0, i - horizon) : i - n + 1]) for i in range(0, len(grams), 37)]
    assert np.mean(repeated) > 0.1


def test_spec_is_frozen_and_strict() -> None:
    with pytest.raises(ValidationError):
        SynthSpec(unknown_knob=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SMALL.seed = 3  # type: ignore[misc]
    with pytest.raises(ValidationError, match="copy_len_max"):
        SynthSpec(copy_len_max=200, copy_max_offset=96)
    with pytest.raises(ValidationError, match="phrase_prob"):
        SynthSpec(phrase_prob=0.7, copy_prob=0.7)


# The tiny records were calibrated on exactly this corpus (records/tiny/*/record.toml):
# changing the generator or the SynthSpec defaults invalidates their published timings.
DEFAULT_CORPUS_SHA256 = {
    "train_000000.bin": "a3774e0b6ff50869",
    "train_000001.bin": "cb466aedc1e879af",
    "train_000002.bin": "a91f4893867ff2bf",
    "train_000003.bin": "13728e713bad6f7e",
    "val_000000.bin": "8a942348b94622cb",
    "val_heldout_000000.bin": "1f5e4f2fd4d27b1a",
}


def test_default_corpus_is_the_one_the_tiny_records_were_calibrated_on(tmp_path: Path) -> None:
    files = generate_corpus(tmp_path, SynthSpec())
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in _all_files(files)}
    assert digests == DEFAULT_CORPUS_SHA256

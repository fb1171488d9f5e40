"""Deterministic synthetic corpus for the tiny CPU track.

The text is a stream of documents (separated by token 0, the end-of-text token) built from
three kinds of segments, each rewarding a different ability of the model:

- Markov runs: a sparse first-order chain with Zipf-weighted successors (learned by the
  embeddings and MLPs, the first thing any model picks up);
- phrases: recurring multi-token motifs whose continuation is fixed once the last two or
  three tokens identify the motif (needs attention to the previous few positions);
- copies: a span of the recent past repeated at a random offset (needs an induction
  mechanism; the offset varies, so only relative positions help, which favours rotary).

Everything is derived from ``spec.seed``: the "language" (chain, phrases) is shared by all
splits, while each shard draws its own documents, so the two validation shards come from
the same distribution but hold different text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.catalog.shards import write_shard
from orchestrator.domain import Progress

EOT = 0

# Seed-sequence keys; distinct so that no two streams share random numbers.
_WORLD, _TRAIN, _VAL, _VAL_HELDOUT = 0, 1, 2, 3


class SynthSpec(BaseModel):
    """Everything that determines the corpus; equal specs give byte-identical files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(default=512, ge=16, le=65536)
    seed: int = Field(default=1337, ge=0)
    tokens_per_shard: int = Field(default=1 << 19, ge=1)
    train_shards: int = Field(default=4, ge=1)
    val_tokens: int = Field(default=1 << 16, ge=1)

    doc_len_min: int = Field(default=256, ge=8)
    doc_len_max: int = Field(default=1024, ge=8)
    # Markov chain: each token has `branching` successors with weights 1/(rank+1)**markov_zipf.
    branching: int = Field(default=4, ge=1)
    markov_zipf: float = Field(default=1.2, ge=0.0)
    unigram_zipf: float = Field(default=1.0, ge=0.0)
    markov_run_mean: float = Field(default=8.0, ge=1.0)
    # Phrases: a fixed dictionary of motifs, picked with Zipf weights 1/(rank+1)**phrase_zipf.
    num_phrases: int = Field(default=256, ge=1)
    phrase_len_min: int = Field(default=3, ge=2)
    phrase_len_max: int = Field(default=8, ge=2)
    phrase_zipf: float = Field(default=0.8, ge=0.0)
    # Probability that a segment is a phrase / a copy (else a Markov run).
    phrase_prob: float = Field(default=0.3, ge=0.0, le=1.0)
    copy_prob: float = Field(default=0.3, ge=0.0, le=1.0)
    # Copies repeat `copy_len_min..copy_len_max` tokens starting at most `copy_max_offset`
    # tokens back, so the source stays inside a short training context.
    copy_len_min: int = Field(default=6, ge=1)
    copy_len_max: int = Field(default=16, ge=1)
    copy_max_offset: int = Field(default=96, ge=2)

    @model_validator(mode="after")
    def _check_ranges(self) -> SynthSpec:
        if self.doc_len_min > self.doc_len_max:
            raise ValueError("doc_len_min must not exceed doc_len_max")
        if self.phrase_len_min > self.phrase_len_max:
            raise ValueError("phrase_len_min must not exceed phrase_len_max")
        if self.copy_len_min > self.copy_len_max:
            raise ValueError("copy_len_min must not exceed copy_len_max")
        if self.copy_len_max >= self.copy_max_offset:
            raise ValueError("copy_len_max must be below copy_max_offset")
        if self.branching >= self.vocab_size - 1:
            raise ValueError("branching must be below vocab_size - 1")
        if self.phrase_prob + self.copy_prob > 1.0:
            raise ValueError("phrase_prob + copy_prob must not exceed 1")
        return self


@dataclass(frozen=True)
class CorpusFiles:
    train: tuple[Path, ...]
    val: Path
    val_heldout: Path


@dataclass(frozen=True)
class _World:
    """The shared 'language': successor table and phrase dictionary."""

    successors: list[list[int]]
    successor_cdf: np.ndarray
    phrases: list[list[int]]
    phrase_cdf: np.ndarray


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0
    return cdf


def _build_world(spec: SynthSpec) -> _World:
    rng = np.random.default_rng([spec.seed, _WORLD])
    words = np.arange(1, spec.vocab_size)
    # A Zipfian unigram over a random ranking, so that frequent tokens are scattered ids.
    unigram = 1.0 / np.arange(1, words.size + 1, dtype=np.float64) ** spec.unigram_zipf
    unigram = unigram[rng.permutation(words.size)]
    unigram /= unigram.sum()
    successors = [
        rng.choice(words, size=spec.branching, replace=False, p=unigram).tolist()
        for _ in range(spec.vocab_size)
    ]
    lengths = rng.integers(spec.phrase_len_min, spec.phrase_len_max + 1, size=spec.num_phrases)
    # Phrase tokens are uniform so that motifs are not just likely Markov paths.
    phrases = [rng.choice(words, size=int(n)).tolist() for n in lengths]
    return _World(
        successors=successors,
        successor_cdf=_zipf_cdf(spec.branching, spec.markov_zipf),
        phrases=phrases,
        phrase_cdf=_zipf_cdf(spec.num_phrases, spec.phrase_zipf),
    )


def _document(spec: SynthSpec, world: _World, rng: np.random.Generator) -> list[int]:
    length = int(rng.integers(spec.doc_len_min, spec.doc_len_max + 1))
    # Draw the per-token randomness in bulk: a Python loop over scalars is the cost here.
    choices = np.searchsorted(world.successor_cdf, rng.random(length)).tolist()
    doc = [EOT]
    prev = EOT
    while len(doc) <= length:
        kind = rng.random()
        can_copy = len(doc) > spec.copy_len_max + 1
        if kind < spec.phrase_prob:
            pick = int(np.searchsorted(world.phrase_cdf, rng.random()))
            doc.extend(world.phrases[pick])
        elif kind < spec.phrase_prob + spec.copy_prob and can_copy:
            n = int(rng.integers(spec.copy_len_min, spec.copy_len_max + 1))
            max_offset = min(spec.copy_max_offset, len(doc) - 1)
            offset = int(rng.integers(n, max_offset + 1))
            start = len(doc) - offset
            doc.extend(doc[start : start + n])
        else:
            run = int(rng.geometric(1.0 / spec.markov_run_mean))
            succ = world.successors
            for i in range(len(doc), min(len(doc) + run, length + 1)):
                prev = succ[prev][choices[i - 1]]
                doc.append(prev)
            continue
        prev = doc[-1]
    return doc[: length + 1]


def _stream(spec: SynthSpec, world: _World, key: tuple[int, ...], num_tokens: int) -> np.ndarray:
    rng = np.random.default_rng([spec.seed, *key])
    out = np.empty(num_tokens, dtype=np.uint16)
    filled = 0
    while filled < num_tokens:
        doc = _document(spec, world, rng)[: num_tokens - filled]
        out[filled : filled + len(doc)] = doc
        filled += len(doc)
    return out


def generate_corpus(
    out_dir: Path,
    spec: SynthSpec,
    progress: Progress | None = None,
) -> CorpusFiles:
    """Write the train shards, the agents' val shard and the scorer's held-out val shard."""
    out_dir = Path(out_dir)
    report = progress or (lambda _msg: None)
    started = time.perf_counter()
    world = _build_world(spec)
    train: list[Path] = []
    for i in range(spec.train_shards):
        path = out_dir / f"train_{i:06d}.bin"
        write_shard(path, _stream(spec, world, (_TRAIN, i), spec.tokens_per_shard))
        train.append(path)
        report(f"wrote {path.name} ({spec.tokens_per_shard} tokens)")
    val = out_dir / "val_000000.bin"
    write_shard(val, _stream(spec, world, (_VAL,), spec.val_tokens))
    report(f"wrote {val.name} ({spec.val_tokens} tokens)")
    heldout = out_dir / "val_heldout_000000.bin"
    write_shard(heldout, _stream(spec, world, (_VAL_HELDOUT,), spec.val_tokens))
    report(f"wrote {heldout.name} ({spec.val_tokens} tokens)")
    report(f"corpus ready in {time.perf_counter() - started:.1f}s")
    return CorpusFiles(train=tuple(train), val=val, val_heldout=heldout)

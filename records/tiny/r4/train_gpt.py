"""Tiny CPU speedrun, record 4: ReLU^2 MLP, QK-norm, zero-init projections, untied head.

Launch: torchrun --standalone --nproc_per_node=1 train_gpt.py
Environment:
  NANOGPT_TRAIN_FILES, NANOGPT_VAL_FILES  globs of token shards
  NANOGPT_VAL_TOKENS                      number of validation tokens evaluated
  NANOGPT_SEED                            seeds init and data order (default 0)
  NANOGPT_NUM_ITERATIONS                  overrides num_iterations, for smoke tests only
"""

import glob
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Hyperparameters:
    # data
    train_files: str = os.environ.get("NANOGPT_TRAIN_FILES", "data/tiny/train_*.bin")
    val_files: str = os.environ.get("NANOGPT_VAL_FILES", "data/tiny/val_000000.bin")
    val_tokens: int = int(os.environ.get("NANOGPT_VAL_TOKENS", "16384"))
    seed: int = int(os.environ.get("NANOGPT_SEED", "0"))
    # optimization
    batch_size: int = 16  # sequences per step, summed over ranks
    seq_len: int = 128
    num_iterations: int = int(os.environ.get("NANOGPT_NUM_ITERATIONS", "75"))
    warmup_iters: int = 0  # zero-init blocks and QK-norm keep early steps stable
    warmdown_frac: float = 0.4  # final fraction of the run with linearly decaying lr
    lr: float = 0.02  # AdamW: head, biases, norms
    embed_lr: float = 0.1  # AdamW: the untied embedding, whose rows get sparse gradients
    muon_lr: float = 0.05  # Muon: the 2-D weights inside the blocks
    muon_momentum: float = 0.95
    val_every: int = 50
    # model
    vocab_size: int = 512
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128


args = Hyperparameters()

# -----------------------------------------------------------------------------
# data


def read_shard(path):
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header.size == 256, f"{path}: truncated header"
    assert header[0] == 20240520, f"{path}: bad magic {header[0]}"
    assert header[1] == 1, f"{path}: unsupported version {header[1]}"
    tokens = np.fromfile(path, dtype="<u2", offset=256 * 4)
    assert tokens.size == header[2], f"{path}: {tokens.size} tokens, header says {header[2]}"
    return tokens


def load_tokens(pattern):
    files = sorted(glob.glob(pattern))
    assert files, f"no shard matches {pattern}"
    return torch.from_numpy(np.concatenate([read_shard(f) for f in files]).astype(np.int64))


class TrainLoader:
    """Random windows of the train tokens; every rank draws the same starts, takes its own."""

    def __init__(self, tokens, seq_len, batch_size, rank, world_size, seed):
        self.tokens, self.seq_len = tokens, seq_len
        self.rows = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.offsets = torch.arange(seq_len + 1)

    def next_batch(self):
        high = self.tokens.numel() - self.seq_len - 1
        starts = torch.randint(0, high, (self.batch_size,), generator=self.gen)[self.rows]
        buf = self.tokens[starts[:, None] + self.offsets]
        return buf[:, :-1], buf[:, 1:]


# -----------------------------------------------------------------------------
# model


class Rotary(nn.Module):
    """Rotates query/key channel pairs by position, so attention scores see relative offsets."""

    def __init__(self, head_dim, max_seq_len, base=10000.0):
        super().__init__()
        freqs = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), freqs)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x):
        cos, sin = self.cos[: x.size(-2)], self.sin[: x.size(-2)]
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, n_head, seq_len):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.rotary = Rotary(dim // n_head, seq_len)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))  # QK-norm
        q, k = self.rotary(q), self.rotary(k)
        # unit-RMS queries and keys cap the logits at scale * head_dim, so use a larger scale
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.c_fc = nn.Linear(dim, 4 * dim)
        self.c_proj = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, dim, n_head, seq_len):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, n_head, seq_len)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, seq_len, n_layer, n_head, dim):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, dim)
        self.h = nn.ModuleList([Block(dim, n_head, seq_len) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight") or name == "lm_head.weight":
                nn.init.zeros_(p)  # blocks start as the identity, predictions as uniform
            elif p.dim() == 2:
                nn.init.normal_(p, mean=0.0, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        x = self.wte(idx)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


# -----------------------------------------------------------------------------
# optimizer


def orthogonalize(G, steps=5):
    """Push every singular value of each matrix in G towards 1 (quintic Newton-Schulz).

    The iteration tolerates low precision, so it runs in bfloat16 like the speedrun's.
    """
    a, b, c = 3.4445, -4.7750, 2.0315  # steep near 0, converging to a band around 1
    X = G.bfloat16()
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT  # iterate on the smaller Gram matrix
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # spectral norm <= 1
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    if tall:
        X = X.mT
    return X.to(G.dtype)


class Muon(torch.optim.Optimizer):
    """SGD with Nesterov momentum whose update of each 2-D weight is orthogonalized.

    Parameters are grouped by shape so that each shape is orthogonalized as one batch.
    """

    def __init__(self, params, lr, momentum):
        params = list(params)
        shapes = sorted({tuple(p.shape) for p in params})
        groups = [dict(params=[p for p in params if tuple(p.shape) == s]) for s in shapes]
        super().__init__(groups, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params, momentum = group["params"], group["momentum"]
            updates = []
            for p in params:
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(momentum).add_(p.grad)
                updates.append(p.grad.add(buf, alpha=momentum))
            updates = orthogonalize(torch.stack(updates))
            rows, cols = params[0].shape
            scale = max(1.0, rows / cols) ** 0.5  # same per-entry size for tall matrices
            for p, u in zip(params, updates, strict=True):
                p.add_(u, alpha=-group["lr"] * scale)


def make_optimizers(model):
    # Muon for the matrices inside the blocks; AdamW for the embedding, head and vectors
    hidden = [p for p in model.h.parameters() if p.dim() == 2]
    hidden_ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if id(p) not in hidden_ids and p is not model.wte.weight]
    groups = [dict(params=[model.wte.weight], lr=args.embed_lr), dict(params=rest, lr=args.lr)]
    return [
        torch.optim.AdamW(groups, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0),
        Muon(hidden, lr=args.muon_lr, momentum=args.muon_momentum),
    ]


def lr_multiplier(step):
    # linear warmup, constant, then linear decay to zero
    if step < args.warmup_iters:
        return (step + 1) / args.warmup_iters
    warmdown = int(args.warmdown_frac * args.num_iterations)
    return min(1.0, (args.num_iterations - step) / max(1, warmdown))


# -----------------------------------------------------------------------------
# training


def main():
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world_size > 1
    if distributed:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if distributed else 0
    master = rank == 0
    assert args.batch_size % world_size == 0

    torch.manual_seed(args.seed)
    train_tokens = load_tokens(args.train_files)
    val_tokens = load_tokens(args.val_files)
    assert val_tokens.numel() > args.val_tokens, "not enough validation tokens"
    assert int(train_tokens.max()) < args.vocab_size and int(val_tokens.max()) < args.vocab_size
    loader = TrainLoader(train_tokens, args.seq_len, args.batch_size, rank, world_size, args.seed)

    model = GPT(args.vocab_size, args.seq_len, args.n_layer, args.n_head, args.n_embd)
    optimizers = make_optimizers(model)
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]

    @torch.no_grad()
    def evaluate():
        model.eval()
        n_seq = args.val_tokens // args.seq_len
        seqs = torch.arange(rank, n_seq, world_size)
        total = torch.zeros(())
        for chunk in seqs.split(args.batch_size):
            buf = val_tokens[chunk[:, None] * args.seq_len + torch.arange(args.seq_len + 1)]
            total += model(buf[:, :-1], buf[:, 1:]) * chunk.numel()
        model.train()
        if distributed:
            dist.all_reduce(total)
        return total.item() / n_seq

    training_time_ms = 0.0
    t0 = time.perf_counter()
    for step in range(args.num_iterations + 1):
        last_step = step == args.num_iterations
        if last_step or step % args.val_every == 0:
            training_time_ms += 1000 * (time.perf_counter() - t0)  # pause the clock
            val_loss = evaluate()
            if master:
                print(
                    f"step:{step}/{args.num_iterations} val_loss:{val_loss:.4f} "
                    f"train_time:{training_time_ms:.0f}ms "
                    f"step_avg:{training_time_ms / max(step, 1):.2f}ms",
                    flush=True,
                )
            t0 = time.perf_counter()
        if last_step:
            break

        inputs, targets = loader.next_batch()
        loss = model(inputs, targets)
        loss.backward()
        if distributed:
            for p in model.parameters():
                dist.all_reduce(p.grad)
                p.grad /= world_size
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * lr_multiplier(step)
            opt.step()
        model.zero_grad(set_to_none=True)

    if distributed:
        dist.barrier()  # no rank tears gloo down while another still talks to it
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

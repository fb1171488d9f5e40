"""GPU mini speedrun, record 2: rotary embeddings and the Muon optimizer.

Launch: torchrun --standalone --nproc_per_node=N train_gpt.py   (N = 1 or 2, one GPU per rank)
Environment:
  NANOGPT_TRAIN_FILES, NANOGPT_VAL_FILES  globs of token shards (FineWeb shard format)
  NANOGPT_VAL_TOKENS                      number of validation tokens evaluated
  NANOGPT_SEED                            seeds init and data order (default 0)
  NANOGPT_NUM_ITERATIONS                  overrides num_iterations, for smoke tests only
  NANOGPT_SMOKE                           1: a model small enough for a CPU smoke test

Start-up (data loading to the GPU, compiling forward, backward and evaluation on a
throw-away batch) happens before step 0 and is not counted in train_time; evaluation
pauses the clock.
"""

import glob
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

SMOKE = os.environ.get("NANOGPT_SMOKE") == "1"


@dataclass
class Hyperparameters:
    # data
    train_files: str = os.environ.get("NANOGPT_TRAIN_FILES", "data/gpu_mini/train_*.bin")
    val_files: str = os.environ.get("NANOGPT_VAL_FILES", "data/gpu_mini/val_000000.bin")
    val_tokens: int = int(os.environ.get("NANOGPT_VAL_TOKENS", "131072"))
    seed: int = int(os.environ.get("NANOGPT_SEED", "0"))
    # optimization
    batch_size: int = 8 if SMOKE else 512  # sequences per step, summed over ranks
    seq_len: int = 256
    num_iterations: int = int(os.environ.get("NANOGPT_NUM_ITERATIONS", "3000"))
    warmup_iters: int = 100
    lr: float = 3e-3  # AdamW: embedding (tied head), biases, norms
    muon_lr: float = 0.03  # Muon: the 2-D weights inside the blocks
    muon_momentum: float = 0.95
    warmdown_frac: float = 0.3  # final fraction of the run with linearly decaying lr
    val_every: int = 50
    # model
    vocab_size: int = 2048
    n_layer: int = 2 if SMOKE else 8
    n_head: int = 2 if SMOKE else 8
    n_embd: int = 32 if SMOKE else 512


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


def load_tokens(pattern, device):
    files = sorted(glob.glob(pattern))
    assert files, f"no shard matches {pattern}"
    tokens = np.concatenate([read_shard(f) for f in files]).astype(np.int32)
    return torch.from_numpy(tokens).to(device)


class TrainLoader:
    """Random windows of the train tokens, drawn on the device; every rank takes its own rows."""

    def __init__(self, tokens, seq_len, batch_size, rank, world_size, seed):
        self.tokens, self.seq_len, self.batch_size = tokens, seq_len, batch_size
        self.rows = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
        self.gen = torch.Generator(device=tokens.device).manual_seed(seed)
        self.offsets = torch.arange(seq_len + 1, device=tokens.device)

    def next_batch(self):
        high = self.tokens.numel() - self.seq_len - 1
        starts = torch.randint(0, high, (self.batch_size,), generator=self.gen, device=self.tokens.device)
        buf = self.tokens[starts[self.rows, None] + self.offsets].long()
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
        cos, sin = self.cos[: x.size(-2)].to(x.dtype), self.sin[: x.size(-2)].to(x.dtype)
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
        q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.c_fc = nn.Linear(dim, 4 * dim)
        self.c_proj = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


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
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2
        for name, p in self.named_parameters():
            if p.dim() == 2:
                # GPT-2 init: residual projections shrink with depth
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        x = self.wte(idx)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x)).float()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


# -----------------------------------------------------------------------------
# optimizer


def orthogonalize(G, steps=5):
    """Push every singular value of each matrix in G towards 1 (quintic Newton-Schulz).

    The iteration tolerates low precision, so it runs in bfloat16.
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
            grads = torch.stack([p.grad for p in params])
            if "momentum_buffer" not in group:
                group["momentum_buffer"] = torch.zeros_like(grads)
            buf = group["momentum_buffer"]
            buf.mul_(momentum).add_(grads)
            updates = orthogonalize(grads.add(buf, alpha=momentum))
            rows, cols = params[0].shape
            scale = max(1.0, rows / cols) ** 0.5  # same per-entry size for tall matrices
            torch._foreach_add_(params, list(updates.unbind(0)), alpha=-group["lr"] * scale)


def make_optimizers(model, fused):
    # Muon for the matrices inside the blocks; AdamW for the embedding, head and vectors
    hidden = [p for p in model.h.parameters() if p.dim() == 2]
    hidden_ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if id(p) not in hidden_ids]
    return [
        torch.optim.AdamW(rest, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0, fused=fused),
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
    cuda = torch.cuda.is_available() and not SMOKE
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world_size > 1
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if distributed:
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    master = rank == 0
    assert args.batch_size % world_size == 0
    local_batch = args.batch_size // world_size

    torch.manual_seed(args.seed)
    train_tokens = load_tokens(args.train_files, device)
    val_tokens = load_tokens(args.val_files, device)
    assert val_tokens.numel() > args.val_tokens, "not enough validation tokens"
    n_val_seq = args.val_tokens // args.seq_len
    assert n_val_seq % args.batch_size == 0, "val_tokens must be a multiple of batch_size * seq_len"
    loader = TrainLoader(train_tokens, args.seq_len, args.batch_size, rank, world_size, args.seed)

    model = GPT(args.vocab_size, args.seq_len, args.n_layer, args.n_head, args.n_embd).to(device)
    forward = torch.compile(model, dynamic=False) if cuda else model
    optimizers = make_optimizers(model, fused=cuda)
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    params = list(model.parameters())
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def all_reduce_grads():
        # one collective for all gradients, averaged over ranks
        if not distributed:
            return
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat, op=dist.ReduceOp.AVG if cuda else dist.ReduceOp.SUM)
        if not cuda:
            flat /= world_size
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    @torch.no_grad()
    def evaluate():
        seqs = torch.arange(rank, n_val_seq, world_size, device=device)
        total = torch.zeros((), device=device)
        for chunk in seqs.split(local_batch):
            buf = val_tokens[chunk[:, None] * args.seq_len + loader.offsets].long()
            with autocast:
                total += forward(buf[:, :-1], buf[:, 1:]) * chunk.numel()
        if distributed:
            dist.all_reduce(total)
        return total.item() / n_val_seq

    # warm-up: compile forward, backward and evaluation on a throw-away batch (no update)
    junk = torch.randint(0, args.vocab_size, (local_batch, args.seq_len + 1), device=device)
    for _ in range(2):
        with autocast:
            forward(junk[:, :-1], junk[:, 1:]).backward()
    model.zero_grad(set_to_none=True)
    evaluate()
    sync()

    training_time_ms = 0.0
    t0 = time.perf_counter()
    for step in range(args.num_iterations + 1):
        last_step = step == args.num_iterations
        if last_step or step % args.val_every == 0:
            sync()
            training_time_ms += 1000 * (time.perf_counter() - t0)  # pause the clock
            val_loss = evaluate()
            if master:
                print(
                    f"step:{step}/{args.num_iterations} val_loss:{val_loss:.4f} "
                    f"train_time:{training_time_ms:.0f}ms "
                    f"step_avg:{training_time_ms / max(step, 1):.2f}ms",
                    flush=True,
                )
            sync()
            t0 = time.perf_counter()
        if last_step:
            break

        inputs, targets = loader.next_batch()
        with autocast:
            loss = forward(inputs, targets)
        loss.backward()
        all_reduce_grads()
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * lr_multiplier(step)
            opt.step()
        model.zero_grad(set_to_none=True)

    if master and cuda:
        print(f"peak memory {torch.cuda.max_memory_allocated() // 2**20} MiB", flush=True)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

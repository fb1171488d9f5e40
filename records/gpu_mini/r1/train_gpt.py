"""GPU mini speedrun, record 1: a plain GPT baseline, compiled, on one or two GPUs.

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
    lr: float = 2e-3
    weight_decay: float = 0.1
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


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
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
    def __init__(self, dim, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, n_head)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, seq_len, n_layer, n_head, dim):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, dim)
        self.wpe = nn.Embedding(seq_len, dim)  # learned absolute positions
        self.h = nn.ModuleList([Block(dim, n_head) for _ in range(n_layer)])
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
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x)).float()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


# -----------------------------------------------------------------------------
# optimizer


def make_optimizers(model, fused):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        dict(params=decay, weight_decay=args.weight_decay),
        dict(params=no_decay, weight_decay=0.0),
    ]
    return [torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=fused)]


def lr_multiplier(step):
    # linear warmup, then cosine decay to 10% of the peak
    if step < args.warmup_iters:
        return (step + 1) / args.warmup_iters
    progress = (step - args.warmup_iters) / max(1, args.num_iterations - args.warmup_iters)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


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

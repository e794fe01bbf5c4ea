#!/usr/bin/env python3
"""PyTorch side of the train-step comparison: the same model shapes as `engine bench-train`.

A GPT-2 (or Llama/Qwen2-style) decoder in plain PyTorch eager mode, as Hugging Face
implements it (explicit masked softmax attention), fp32, AdamW, next-token cross-entropy.
Prints one JSON line like the engine: {"ms_per_step", "tokens_per_s", "peak_rss_mb"}.

Run on the CPU machines as
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 benchmarks/pytorch/bench_train.py --family gpt2 \
      --layers 4 --dim 256 --heads 4 --vocab 512 --seq 128 --batch 8 --steps 10
(OMP_WAIT_POLICY=PASSIVE keeps PyTorch's two thread pools from fighting over 2 cores.)
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Gpt2Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln_1 = nn.LayerNorm(c)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def forward(self, x, mask):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.h)
        att = att.masked_fill(mask[:, :, :t, :t] == 0, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class RmsNorm(nn.Module):
    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, c, h, kv, ffn, qkv_bias):
        super().__init__()
        self.h, self.kv, self.d = h, kv, c // h
        self.input_layernorm = RmsNorm(c)
        self.q_proj = nn.Linear(c, h * self.d, bias=qkv_bias)
        self.k_proj = nn.Linear(c, kv * self.d, bias=qkv_bias)
        self.v_proj = nn.Linear(c, kv * self.d, bias=qkv_bias)
        self.o_proj = nn.Linear(h * self.d, c, bias=False)
        self.post_attention_layernorm = RmsNorm(c)
        self.gate_proj = nn.Linear(c, ffn, bias=False)
        self.up_proj = nn.Linear(c, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, c, bias=False)

    def forward(self, x, mask, cos, sin):
        b, t, c = x.shape
        hs = self.input_layernorm(x)
        q = self.q_proj(hs).view(b, t, self.h, self.d).transpose(1, 2)
        k = self.k_proj(hs).view(b, t, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(hs).view(b, t, self.kv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.h // self.kv, dim=1)
        v = v.repeat_interleave(self.h // self.kv, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.d)
        att = att.masked_fill(mask[:, :, :t, :t] == 0, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, self.h * self.d)
        x = x + self.o_proj(y)
        hs = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(hs)) * self.up_proj(hs))


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        c = a.dim
        self.wte = nn.Embedding(a.vocab, c)
        self.register_buffer("mask", torch.tril(torch.ones(a.seq, a.seq)).view(1, 1, a.seq, a.seq))
        if a.family == "gpt2":
            self.wpe = nn.Embedding(a.seq, c)
            self.blocks = nn.ModuleList(Gpt2Block(c, a.heads) for _ in range(a.layers))
            self.ln_f = nn.LayerNorm(c)
            self.lm_head = None
        else:
            kv = a.kv_heads or a.heads
            ffn = a.ffn or max(64, (8 * c // 3 + 63) // 64 * 64)
            self.blocks = nn.ModuleList(LlamaBlock(c, a.heads, kv, ffn, a.family == "qwen2") for _ in range(a.layers))
            self.ln_f = RmsNorm(c)
            self.lm_head = None if a.family == "qwen2" else nn.Linear(c, a.vocab, bias=False)
            d = c // a.heads
            inv = 1.0 / (10000.0 ** (torch.arange(0, d, 2).float() / d))
            freqs = torch.outer(torch.arange(a.seq).float(), inv)
            emb = torch.cat((freqs, freqs), dim=-1)
            self.register_buffer("cos", emb.cos())
            self.register_buffer("sin", emb.sin())

    def forward(self, idx):
        t = idx.shape[1]
        if self.a.family == "gpt2":
            x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
            for blk in self.blocks:
                x = blk(x, self.mask)
        else:
            x = self.wte(idx)
            for blk in self.blocks:
                x = blk(x, self.mask, self.cos[:t], self.sin[:t])
        x = self.ln_f(x)
        return x @ self.wte.weight.t() if self.lm_head is None else self.lm_head(x)


def add_model_arguments(p):
    """The model-shape flags of `engine bench-train` / `bench-generate`, which Model reads."""
    p.add_argument("--family", default="gpt2", choices=["gpt2", "llama", "qwen2"])
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--heads", type=int, required=True)
    p.add_argument("--kv-heads", type=int, default=None)
    p.add_argument("--ffn", type=int, default=None)
    p.add_argument("--vocab", type=int, required=True)


def main():
    p = argparse.ArgumentParser()
    add_model_arguments(p)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="torch device (cuda on a GPU machine: timed with synchronisation; TF32 off)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 GEMMs, as the engine's default CUDA precision
    model = Model(a).to(a.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    idx = torch.randint(0, a.vocab, (a.batch, a.seq)).to(a.device)
    times = []
    for i in range(a.warmup + a.steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(idx)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, a.vocab), idx[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if idx.is_cuda:
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append((time.perf_counter() - start) * 1000)
    ms = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = {"peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)} if idx.is_cuda else {}
    print(json.dumps({"ms_per_step": round(ms, 2), "tokens_per_s": round(a.batch * a.seq / ms * 1000, 1),
                      "peak_rss_mb": round(rss, 1), **gpu}))


if __name__ == "__main__":
    main()

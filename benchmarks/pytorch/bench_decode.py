#!/usr/bin/env python3
"""PyTorch side of the decode comparison: the same shapes as `engine bench-generate`.

A GPT-2 decoder in eager PyTorch with a key/value cache the way Hugging Face keeps one (past keys
and values concatenated per step), fp32, random weights. B random prompts of P tokens: the
first P - 1 are prefilled together, then N decode steps each run one batched forward over one
token per sequence (the last prompt token first) and sample the next at temperature 1 (EOS
ignored): the engine's split between prefill and decode. Prints one JSON line like the engine:
{"decode_tokens_per_s", "prefill_ms", "peak_rss_mb"}; decode time excludes the prefill.

Run on the CPU machines as
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 benchmarks/pytorch/bench_decode.py --family gpt2 \
      --layers 4 --dim 256 --heads 4 --vocab 512 --batch 16 --prompt-len 16 --new-tokens 64
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


class Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln_1 = nn.LayerNorm(c)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def forward(self, x, past):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        s = k.shape[2]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.h)
        if t > 1:  # causal mask over the new tokens; a single new token sees everything cached
            mask = torch.ones(t, s, dtype=torch.bool).tril(diagonal=s - t)
            att = att.masked_fill(~mask, float("-inf"))
        y = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, c)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")), (k, v)


class Gpt2(nn.Module):
    def __init__(self, a, positions):
        super().__init__()
        self.wte = nn.Embedding(a.vocab, a.dim)
        self.wpe = nn.Embedding(positions, a.dim)
        self.blocks = nn.ModuleList(Block(a.dim, a.heads) for _ in range(a.layers))
        self.ln_f = nn.LayerNorm(a.dim)

    def forward(self, idx, start, cache):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(start, start + t, device=idx.device))
        new_cache = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, cache[i] if cache else None)
            new_cache.append(kv)
        return self.ln_f(x[:, -1]) @ self.wte.weight.t(), new_cache


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def run_once(model, prompts, new_tokens, device, generator):
    sync(device)
    start = time.perf_counter()
    _, cache = model(prompts[:, :-1], 0, None)
    sync(device)
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    token, pos = prompts[:, -1:], prompts.shape[1] - 1
    for _ in range(new_tokens):
        logits, cache = model(token, pos, cache)
        token = torch.multinomial(logits.softmax(-1), 1, generator=generator)
        pos += 1
    sync(device)
    return prefill, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--family", default="gpt2", choices=["gpt2"])
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--heads", type=int, required=True)
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--prompt-len", type=int, required=True)
    p.add_argument("--new-tokens", type=int, required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = Gpt2(a, a.prompt_len + a.new_tokens + 1).to(a.device).eval()
    prompts = torch.randint(0, a.vocab, (a.batch, a.prompt_len), device=a.device)
    generator = torch.Generator(device=a.device).manual_seed(1)
    run_once(model, prompts, a.new_tokens, a.device, generator)  # warm-up
    runs = [run_once(model, prompts, a.new_tokens, a.device, generator) for _ in range(a.repeats)]
    rates = [a.batch * a.new_tokens / d for _, d in runs]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"decode_tokens_per_s": round(statistics.median(rates), 1),
                      "prefill_ms": round(statistics.median(p for p, _ in runs) * 1000, 2),
                      "peak_rss_mb": round(rss, 1)}))


if __name__ == "__main__":
    main()

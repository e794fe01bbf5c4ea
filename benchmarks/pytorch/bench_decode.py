#!/usr/bin/env python3
"""PyTorch side of the decode comparison: the shapes of benchmarks/Engine.Benchmarks/DecodeBenchmarks.cs.

B random prompts of P tokens on random weights (the bench_train.py model), then N new tokens per
sequence with a KV cache in eager PyTorch (fp32), sampled at temperature 1 (or greedy with --greedy),
EOS ignored. Times whole generate calls and prints one JSON line:
  {"decode_tokens_per_s": B (N-1) / median time of the N-1 cached decode steps,
   "tokens_per_s": B N / median time of the whole call, prefill included (what the engine's suite measures),
   "ms_per_call", "prefill_ms", "peak_rss_mb"}

Run on the CPU machines as
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 benchmarks/pytorch/bench_decode.py --family gpt2 \
      --layers 4 --dim 256 --heads 4 --vocab 512 --batch 16 --prompt-len 16 --new-tokens 64
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import Model, add_model_arguments, rotate_half  # noqa: E402  (same model, same weights layout)


def attend(block, q, k_all, v_all, causal):
    att = (q @ k_all.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if causal:
        t = q.shape[2]
        att = att.masked_fill(torch.ones(t, t, dtype=torch.bool).tril().logical_not(), float("-inf"))
    return att.softmax(dim=-1) @ v_all


def gpt2_block(block, x, cache, causal):
    b, t, c = x.shape
    q, k, v = block.c_attn(block.ln_1(x)).split(c, dim=2)
    q, k, v = (z.view(b, t, block.h, c // block.h).transpose(1, 2) for z in (q, k, v))
    if cache:
        k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
    y = attend(block, q, k, v, causal).transpose(1, 2).reshape(b, t, c)
    x = x + block.c_proj(y)
    x = x + block.mlp_proj(torch.nn.functional.gelu(block.c_fc(block.ln_2(x)), approximate="tanh"))
    return x, (k, v)


def llama_block(block, x, cache, causal, cos, sin):
    b, t, c = x.shape
    hs = block.input_layernorm(x)
    q = block.q_proj(hs).view(b, t, block.h, block.d).transpose(1, 2)
    k = block.k_proj(hs).view(b, t, block.kv, block.d).transpose(1, 2)
    v = block.v_proj(hs).view(b, t, block.kv, block.d).transpose(1, 2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    if cache:
        k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
    rep = block.h // block.kv
    y = attend(block, q, k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1), causal)
    x = x + block.o_proj(y.transpose(1, 2).reshape(b, t, block.h * block.d))
    hs = block.post_attention_layernorm(x)
    x = x + block.down_proj(torch.nn.functional.silu(block.gate_proj(hs)) * block.up_proj(hs))
    return x, (k, v)


def forward(model, idx, start, caches):
    """Logits of the last position; appends this chunk's keys and values to caches."""
    t = idx.shape[1]
    causal = t > 1
    if model.a.family == "gpt2":
        x = model.wte(idx) + model.wpe(torch.arange(start, start + t, device=idx.device))
    else:
        x = model.wte(idx)
        cos, sin = model.cos[start:start + t], model.sin[start:start + t]
    for i, blk in enumerate(model.blocks):
        if model.a.family == "gpt2":
            x, caches[i] = gpt2_block(blk, x, caches[i], causal)
        else:
            x, caches[i] = llama_block(blk, x, caches[i], causal, cos, sin)
    x = model.ln_f(x[:, -1])
    return x @ model.wte.weight.t() if model.lm_head is None else model.lm_head(x)


def pick(logits, greedy, gen):
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=gen)


@torch.no_grad()
def generate(model, prompts, new_tokens, greedy, gen):
    caches = [None] * len(model.blocks)
    start = time.perf_counter()
    token = pick(forward(model, prompts, 0, caches), greedy, gen)
    sync(token)
    prefill = time.perf_counter() - start
    pos = prompts.shape[1]
    for _ in range(new_tokens - 1):
        token = pick(forward(model, token, pos, caches), greedy, gen)
        pos += 1
    sync(token)
    return time.perf_counter() - start, prefill


def sync(t):
    """Waits for a GPU's queued work, so that the timer reads finished work."""
    if t.is_cuda:
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser()
    add_model_arguments(p)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--greedy", action="store_true", help="argmax instead of sampling at temperature 1")
    p.add_argument("--repeat", type=int, default=3, help="timed calls (after one warm-up call)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu", help="torch device (cuda on a GPU machine; TF32 off)")
    a = p.parse_args()
    a.seq = a.prompt_len + a.new_tokens
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    torch.backends.cuda.matmul.allow_tf32 = False
    model = Model(a).eval().to(a.device)
    prompts = torch.randint(0, a.vocab, (a.batch, a.prompt_len)).to(a.device)
    gen = torch.Generator(device=a.device).manual_seed(3)
    generate(model, prompts, a.new_tokens, a.greedy, gen)
    calls = [generate(model, prompts, a.new_tokens, a.greedy, gen) for _ in range(a.repeat)]
    total = statistics.median(c[0] for c in calls)
    decode = statistics.median(c[0] - c[1] for c in calls)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "decode_tokens_per_s": round(a.batch * (a.new_tokens - 1) / decode, 1),
        "tokens_per_s": round(a.batch * a.new_tokens / total, 1),
        "ms_per_call": round(total * 1000, 2),
        "prefill_ms": round(statistics.median(c[1] for c in calls) * 1000, 2),
        "peak_rss_mb": round(rss, 1),
    }))


if __name__ == "__main__":
    main()

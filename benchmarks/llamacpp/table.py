#!/usr/bin/env python3
"""Prints the engine / llama.cpp table of a benchmarks/llamacpp/run.sh results folder (Markdown).

    table.py RESULTS_DIR

engine.jsonl: one `engine bench-generate` line per shape and batch (the median of its timed runs);
llamacpp.jsonl: one llama-batched-bench line per shape, batch and run (the median over runs is taken here).
"""
import json
import statistics
import sys
from pathlib import Path

PROMPT_LEN = 16


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def main():
    out = Path(sys.argv[1])
    engine = {(r["shape"], r["batch"]): r["engine"] for r in read_jsonl(out / "engine.jsonl")}
    llama = {}
    for r in read_jsonl(out / "llamacpp.jsonl"):
        llama.setdefault((r["shape"], r["pl"]), []).append(r)

    def ratio(a, b):
        return f"{a / b:.2f}x" if a and b else "-"

    print((out / "run.txt").read_text().strip().replace("\n", "; "))
    print()
    print("| shape | batch | prefill engine | prefill llama.cpp | engine / llama.cpp | decode engine | decode llama.cpp | engine / llama.cpp |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (shape, batch), e in engine.items():
        runs = llama.get((shape, batch), [])
        l_pp = statistics.median(r["speed_pp"] for r in runs) if runs else None
        l_tg = statistics.median(r["speed_tg"] for r in runs) if runs else None
        e_pp = batch * PROMPT_LEN / (e["prefill_ms"] / 1000)
        e_tg = e["decode_tokens_per_s"]
        fmt = lambda v: "-" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.3g}"  # noqa: E731
        print(f"| {shape} | {batch} | {fmt(e_pp)} | {fmt(l_pp)} | {ratio(e_pp, l_pp)} | {fmt(e_tg)} | {fmt(l_tg)} | {ratio(e_tg, l_tg)} |")
    runs = {shape: len(llama.get((shape, 1), [])) for shape, _ in engine}
    print()
    print("llama.cpp runs counted per shape (a run stopped by --llama-timeout is not): " + ", ".join(f"{shape} {n}" for shape, n in runs.items()))
    print("tokens/s; medians (engine: of its --repeats timed runs after one warm-up; llama.cpp: of --repeats runs of "
          "llama-batched-bench); F32 weights and KV cache; 16-token prompts, 64 new tokens.")


if __name__ == "__main__":
    main()

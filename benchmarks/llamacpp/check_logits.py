#!/usr/bin/env python3
"""Checks that llama.cpp computes the same logits as the engine on a GGUF written by hf_to_gguf.py.

    check_logits.py --model HF_DIR --gguf FILE.gguf --eval-callback LLAMA_BUILD/bin/llama-eval-callback
                    --engine Engine.Cli.dll --work DIR [--prompt TEXT]... [--tolerance 2e-3]

The prompt is tokenized by llama.cpp with the synthetic byte-level vocabulary (token id = UTF-8 byte value),
so the engine is given the same ids. llama-eval-callback prints every graph tensor, the last token's logits
(`result_output`) summarised as their first and last three entries (4 decimals); `engine forward-backward`
writes the full logits. For each prompt the check compares those six entries and prints one line; exit code 1
when one differs by more than the tolerance. (llama.cpp's CPU GELU reads a half-precision table, so the
logits agree to ~1e-4, not to the last bit.)
"""
import argparse
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np


def read_logits(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    info = header["logits"]
    begin, end = info["data_offsets"]
    return np.frombuffer(data[begin:end], dtype="<f4").reshape(info["shape"])


def llama_logits(output):
    """The shape of result_output and the entries llama-eval-callback printed for it."""
    start = output.find(" result_output = ")
    if start < 0:
        sys.exit("llama-eval-callback printed no result_output tensor")
    block = output[start:]
    shape = [int(x) for x in re.search(r"\) = \{([\d, ]+)\}", block).group(1).split(",")]
    end = block.index("sum = ")
    values = [float(v) for v in re.findall(r"-?\d+\.\d+|-?nan|-?inf", block[block.index("\n"):end])]
    return shape, values


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--eval-callback", required=True)
    ap.add_argument("--engine", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--prompt", action="append", help="default: two short prompts")
    ap.add_argument("--tolerance", type=float, default=2e-3)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    ok = True
    for n, prompt in enumerate(args.prompt or ["Hello!", "2 + 2 = 4, said the fox."]):
        ok &= check(args, prompt, os.path.join(args.work, str(n)))
    sys.exit(0 if ok else 1)


def check(args, prompt, work):
    os.makedirs(work, exist_ok=True)
    ids = list(prompt.encode("utf-8"))
    tokens = os.path.join(work, "tokens.json")
    with open(tokens, "w") as f:
        json.dump({"input_ids": [ids]}, f)
    logits_file = os.path.join(work, "engine-logits.safetensors")
    subprocess.run(["dotnet", args.engine, "forward-backward", "--model", args.model, "--tokens", tokens, "--out", logits_file,
                    "--device", "cpu"], check=True, stdout=subprocess.DEVNULL)
    engine = read_logits(logits_file)[0, -1].astype(np.float64)
    os.remove(logits_file)  # it also holds every parameter's gradient: 1 GB for 124m

    run = subprocess.run([args.eval_callback, "-m", args.gguf, "-p", prompt, "-c", "64", "-t", "2"], capture_output=True, text=True)
    with open(os.path.join(work, "eval-callback.log"), "w") as f:
        f.write(run.stdout + run.stderr)
    if run.returncode != 0:
        sys.exit(f"llama-eval-callback failed ({run.returncode}); see {work}/eval-callback.log")
    shape, values = llama_logits(run.stdout + run.stderr)
    vocab = engine.shape[0]
    if shape[0] != vocab or shape[1] != 1:
        sys.exit(f"result_output has shape {shape}, expected [{vocab}, 1] (the last token's logits)")
    index = [0, 1, 2, vocab - 3, vocab - 2, vocab - 1]
    diff = max(abs(v - engine[i]) for v, i in zip(values, index))
    ok = len(values) == len(index) and diff <= args.tolerance
    print(f"logits check {'ok' if ok else 'FAILED'} ({os.path.basename(args.gguf)}, prompt {prompt!r}, {len(ids)} tokens): "
          f"last token's logits {index}: llama.cpp {values}, engine {[round(float(engine[i]), 4) for i in index]}; "
          f"max |diff| {diff:.1e} (llama.cpp prints 4 decimals)")
    return ok

if __name__ == "__main__":
    main()

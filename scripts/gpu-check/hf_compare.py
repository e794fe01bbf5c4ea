#!/usr/bin/env python3
"""The engine's forward and backward against PyTorch, through `engine forward-backward`.

Two sources of checkpoints, both compared on logits, loss and every gradient (normalised max error
max|engine - ref| / max|ref|, as the tests measure it):

  fixtures      the committed PyTorch fixtures (tests/Engine.Tests/Fixtures/<name>: a tiny HF checkpoint
                and its float64 reference, expected.safetensors). Needs numpy only.
  transformers  real `transformers` models of the three families (GPT2LMHeadModel, LlamaForCausalLM,
                Qwen2ForCausalLM, Qwen3ForCausalLM) with random weights, saved with save_pretrained as
                HF checkpoints; the reference is the same model's forward and backward in float64 on
                --torch-device (labels = input_ids, HF's loss). Needs torch and transformers.

Writes one JSON line per compared output to --jsonl and a table to stdout; exits 1 if any error
exceeds its bound (--bound, default 1e-4: the CPU test's bound; looser under TF32).

    hf_compare.py --engine ./engine --device cuda --work /tmp/hf --fixtures tests/Engine.Tests/Fixtures
    hf_compare.py --engine ./engine --device cuda --work /tmp/hf --transformers --torch-device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FIXTURES = ["gpt2", "gpt2_prefixed_sharded", "llama_gqa", "qwen2_tied", "qwen2_untied", "qwen2_bf16", "qwen3_tied"]
FAMILIES = ["gpt2", "llama", "qwen2", "qwen3"]


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """name -> float64 array (F32, F16, BF16, I32)."""
    buf = path.read_bytes()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        raw = buf[base + start:base + end]
        dtype = info["dtype"]
        if dtype == "F32":
            a = np.frombuffer(raw, "<f4").astype(np.float64)
        elif dtype == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float64)
        elif dtype == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        elif dtype == "I32":
            a = np.frombuffer(raw, "<i4").astype(np.float64)
        else:
            raise SystemExit(f"{path}: dtype {dtype} of {name} not supported here")
        out[name] = a.reshape(info["shape"])
    return out


def relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64).ravel()
    got = np.asarray(got, np.float64).ravel()
    if ref.shape != got.shape:
        return float("inf")
    if np.isnan(got).any():
        return float("inf")
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def run_engine(engine: str, model_dir: Path, tokens: Path, out: Path, device: str) -> tuple[dict[str, np.ndarray], float]:
    start = time.perf_counter()
    proc = subprocess.run([engine, "forward-backward", "--model", str(model_dir), "--tokens", str(tokens), "--out", str(out),
                           "--device", device], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"engine forward-backward {model_dir.name} failed ({proc.returncode}): {proc.stderr.strip()}")
    return read_safetensors(out), time.perf_counter() - start


def compare(source: str, name: str, ref: dict[str, np.ndarray], got: dict[str, np.ndarray], bound: float, rows: list[dict]) -> None:
    """Logits, loss and every grad.* of the reference; a gradient the engine did not write is a failure."""
    for key in ["logits", "loss"] + sorted(k for k in ref if k.startswith("grad.")):
        err = relative_error(ref[key], got[key]) if key in got else float("inf")
        rows.append({"source": source, "model": name, "output": key, "error": err, "bound": bound, "ok": err <= bound})


def fixtures(args, rows: list[dict]) -> None:
    root = Path(args.fixtures)
    for name in args.fixture_names or FIXTURES:
        fx = root / name
        got, seconds = run_engine(args.engine, fx, fx / "tokens.json", Path(args.work) / f"fixture-{name}.safetensors", args.device)
        compare("fixture", name, read_safetensors(fx / "expected.safetensors"), got, args.bound, rows)
        print(f"fixture {name}: engine forward-backward {seconds:.1f} s", file=sys.stderr)


def make_model(family: str, torch, transformers):
    """A small real transformers model of a family, random weights (std 0.2, as the fixtures), eager attention."""
    # Token ids inside the small vocabulary (the families' defaults, e.g. Qwen's 151643, lie outside it).
    ids = dict(bos_token_id=1, eos_token_id=2)
    common = dict(vocab_size=96, max_position_embeddings=64, tie_word_embeddings=family != "llama", **ids)
    if family == "gpt2":
        config = transformers.GPT2Config(vocab_size=96, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **ids)
        cls = transformers.GPT2LMHeadModel
    elif family == "llama":
        config = transformers.LlamaConfig(hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
                                          num_key_value_heads=2, rms_norm_eps=1e-6, **common)
        cls = transformers.LlamaForCausalLM
    elif family == "qwen2":
        config = transformers.Qwen2Config(hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
                                          num_key_value_heads=2, rms_norm_eps=1e-6, **common)
        cls = transformers.Qwen2ForCausalLM
    else:
        config = transformers.Qwen3Config(hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
                                          num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, **common)
        cls = transformers.Qwen3ForCausalLM
    config._attn_implementation = "eager"
    torch.manual_seed(1234 + FAMILIES.index(family))
    model = cls(config).float().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


def hf_models(args, rows: list[dict]) -> None:
    import torch
    import transformers

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    for family in args.families:
        model = make_model(family, torch, transformers)
        folder = Path(args.work) / f"hf-{family}"
        try:
            model.save_pretrained(folder, safe_serialization=True)
        except TypeError:  # transformers 5 writes safetensors only and dropped the flag
            model.save_pretrained(folder)
        stored = set(read_safetensors(folder / "model.safetensors"))
        ids = torch.randint(0, model.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(7))
        tokens = folder / "tokens.json"
        tokens.write_text(json.dumps({"input_ids": ids.tolist()}))

        # The reference: the saved float32 weights, computed in float64 on the torch device.
        ref_model = model.to(torch.float64).to(args.torch_device)
        out = ref_model(input_ids=ids.to(args.torch_device), labels=ids.to(args.torch_device))
        out.loss.backward()
        ref = {"logits": out.logits.detach().cpu().numpy(), "loss": np.array([out.loss.item()])}
        for name, p in ref_model.named_parameters():
            if name in stored:
                ref["grad." + name] = p.grad.detach().cpu().numpy()
        missing = stored - {k[5:] for k in ref if k.startswith("grad.")}
        if missing:
            raise RuntimeError(f"{family}: stored tensors without a torch gradient: {sorted(missing)}")
        got, seconds = run_engine(args.engine, folder, tokens, folder / "engine.safetensors", args.device)
        compare("transformers", f"{family} ({type(model).__name__}, transformers {transformers.__version__})", ref, got, args.bound, rows)
        print(f"transformers {family}: engine forward-backward {seconds:.1f} s", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", required=True, help="the engine CLI (the published single file, or 'dotnet Engine.Cli.dll' via a wrapper)")
    p.add_argument("--device", default="cuda", help="engine device spec (cuda, opencl, cpu)")
    p.add_argument("--work", required=True, help="folder for checkpoints and outputs")
    p.add_argument("--fixtures", help="the fixtures folder (tests/Engine.Tests/Fixtures)")
    p.add_argument("--fixture-names", nargs="*", help=f"fixtures to run (default: {' '.join(FIXTURES)})")
    p.add_argument("--transformers", action="store_true", help="also compare real transformers models (needs torch, transformers)")
    p.add_argument("--families", nargs="*", default=FAMILIES, choices=FAMILIES)
    p.add_argument("--torch-device", default="cpu", help="where the float64 torch reference runs")
    p.add_argument("--bound", type=float, default=1e-4)
    p.add_argument("--label", default="", help="a tag written in every JSON line (e.g. fp32, tf32)")
    p.add_argument("--jsonl", help="append one JSON line per compared output here")
    args = p.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    problems = []
    for part, wanted in ((fixtures, args.fixtures), (hf_models, args.transformers)):
        if not wanted:
            continue
        try:
            part(args, rows)
        except Exception as e:  # one failing part is reported, the other still runs
            problems.append(f"{part.__name__}: {type(e).__name__}: {e}")
    for r in rows:
        r["label"] = args.label
        r["device"] = args.device
    if args.jsonl:
        with open(args.jsonl, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    by_model: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by_model.setdefault((r["source"], r["model"]), []).append(r)
    for (source, model), rs in by_model.items():
        worst = max(rs, key=lambda r: r["error"])
        bad = [r for r in rs if not r["ok"]]
        print(f"{'ok  ' if not bad else 'FAIL'} {source:<12} {model:<58} {len(rs):>3} outputs, worst {worst['error']:.2e} "
              f"({worst['output']}), bound {args.bound:.0e}{'' if not bad else ', over: ' + ', '.join(r['output'] for r in bad[:4])}")
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems or any(not r["ok"] for r in rows) or not rows else 0


if __name__ == "__main__":
    sys.exit(main())

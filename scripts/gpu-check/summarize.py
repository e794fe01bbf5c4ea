#!/usr/bin/env python3
"""Writes the GPU check's summary (markdown, to stdout) from the files scripts/gpu-check.sh left in OUT.

    summarize.py OUT > OUT/summary.md
"""
import json
import re
import sys
from pathlib import Path


def lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def jsonl(path: Path) -> list[dict]:
    rows = []
    for line in lines(path):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def parity(out: Path, name: str) -> list[str]:
    text = lines(out / f"{name}.txt")
    closing = next((l for l in reversed(text) if l.startswith("check-backends:")), None)
    failed = [l for l in text if " FAIL " in f" {l} "]
    worst = {}
    for l in text:
        m = re.search(r"(ok  |FAIL) (\S+(?: \S+)*?)\.(\S+)\s+rel\.err (\S+)", l)
        if m:
            family = m.group(2).split()[0]
            worst[family] = max(worst.get(family, 0.0), float(m.group(4)))
    body = [f"- {closing or 'no closing line: ' + (text[-1] if text else 'no output')}"]
    body += [f"- {l.strip()}" for l in failed[:20]]
    if worst:
        body.append("- worst error per op: " + ", ".join(f"{k} {v:.1e}" for k, v in sorted(worst.items())))
    return body


def compare_table(rows: list[dict]) -> list[str]:
    by = {}
    for r in rows:
        by.setdefault((r["label"], r["source"], r["model"]), []).append(r)
    out = ["| precision | source | model | outputs | worst error (output) | bound | verdict |", "|---|---|---|---|---|---|---|"]
    for (label, source, model), rs in by.items():
        worst = max(rs, key=lambda r: r["error"])
        bad = sum(1 for r in rs if not r["ok"])
        out.append(f"| {label} | {source} | {model} | {len(rs)} | {worst['error']:.2e} ({worst['output']}) | {worst['bound']:.0e} | "
                   f"{'ok' if bad == 0 else f'{bad} over'} |")
    return out


def metric(result: dict, case: str) -> tuple[str, float] | None:
    if case.startswith("train"):
        return ("ms/step", result["ms_per_step"]) if "ms_per_step" in result else None
    if case.startswith("decode"):
        key = "decode_tokens_per_s" if "decode_tokens_per_s" in result else "tokens_per_s"
        return ("tokens/s", result[key]) if key in result else None
    return None


def bench_table(rows: list[dict]) -> list[str]:
    out = ["| case | metric | engine | PyTorch | engine / PyTorch (speed) |", "|---|---|---|---|---|"]
    cases: dict[str, dict[str, object]] = {}
    for r in rows:
        case = r["case"]
        if case.startswith("gemm"):
            if "result" in r:
                res = r["result"]
                key = f"{case} n={res['n']} {res['variant']}"
                cases.setdefault(key, {})[r["side"]] = ("GFLOPS", res["gflops"])
            else:
                cases.setdefault(case, {})[r["side"]] = ("error", r["error"])
            continue
        if "result" in r:
            m = metric(r["result"], case)
            if m:
                cases.setdefault(case, {})[r["side"]] = m
        else:
            cases.setdefault(case, {})[r["side"]] = ("error", r["error"])
    for case, sides in cases.items():
        e, p = sides.get("engine"), sides.get("pytorch")
        unit = (e or p)[0]
        ratio = ""
        if e and p and e[0] == p[0] != "error" and p[1] and e[1]:
            ratio = f"{(p[1] / e[1]) if unit == 'ms/step' else (e[1] / p[1]):.2f}x"
        fmt = lambda s: "-" if s is None else (f"error: {s[1]}" if s[0] == "error" else f"{s[1]:,.1f}")
        out.append(f"| {case} | {unit} | {fmt(e)} | {fmt(p)} | {ratio} |")
    return out


def main() -> int:
    out = Path(sys.argv[1])
    steps = [l.split("\t") for l in lines(out / "steps.tsv") if l.count("\t") == 2]
    verdict = "PASS" if steps and all(rc == "0" for _, rc, _ in steps) else "FAIL"
    doc = ["# GPU check", "", f"verdict: **{verdict}** (PASS when every check step exited 0; the benchmarks are figures, not checks)", "", "```", *lines(out / "environment.txt"), "```", "",
           "## Steps", "", "| step | exit | seconds |", "|---|---|---|"]
    doc += [f"| {n} | {rc}{' (timed out)' if rc == '124' else ''} | {s} |" for n, rc, s in steps]
    for name, title in (("parity", "Backend parity (fp32), device against the CPU backend"),
                        ("parity-tf32", "Backend parity under TF32 (bounds x300): the errors TF32 costs")):
        if (out / f"{name}.txt").exists():
            doc += ["", f"## {title}", "", *parity(out, name)]
    compared = jsonl(out / "compare.jsonl")
    if compared:
        doc += ["", "## Forward, loss and gradients against PyTorch (fixtures) and transformers", "", *compare_table(compared)]
    for name in ("fixtures", "fixtures-tf32", "transformers"):
        fails = [l for l in lines(out / f"{name}.txt") if l.startswith("FAIL")]
        if fails:
            doc += ["", f"{name}:", *[f"- {l}" for l in fails]]
    benches = jsonl(out / "bench.jsonl")
    if benches:
        doc += ["", "## Benchmarks, engine beside PyTorch on the same device", "",
                "(train: ms per step, ratio = PyTorch ms / engine ms; decode: generated tokens/s; GEMM: GFLOPS, fp32 unless tf32)", "",
                *bench_table(benches)]
    ilgpu = [r for r in (json.loads(l) for l in lines(out / "ilgpu.txt") if l.startswith("{")) if "impl" in r]
    if ilgpu:
        doc += ["", "## ILGPU: the engine's GEMM as an ILGPU kernel beside the engine's own kernel (GFLOPS, fp32)", "",
                "| device | n | variant | ILGPU | engine | engine / ILGPU |", "|---|---|---|---|---|---|"]
        pairs = {}
        for r in ilgpu:
            pairs.setdefault((r["device"].replace("ilgpu-", ""), r["n"], r["variant"]), {})[r["impl"]] = r["gflops"]
        for (device, n, variant), v in pairs.items():
            i, e = v.get("ilgpu"), v.get("engine")
            ratio = f"{e / i:.2f}x" if i and e else ""
            doc.append(f"| {device} | {n} | {variant} | {i if i is not None else '-'} | {e if e is not None else '-'} | {ratio} |")
    print("\n".join(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())

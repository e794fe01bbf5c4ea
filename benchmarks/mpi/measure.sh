#!/usr/bin/env bash
# Data-parallel scaling on this machine: tokens/s of SFT and RL steps at N = 1 and N = 2 ranks (one CPU
# thread per rank), and the gradient all-reduce's bytes and time per step, from the runs' metrics.jsonl.
# Usage: benchmarks/mpi/measure.sh [out-dir]   (needs mpiexec.mpich and a Release build of the CLI)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-$(mktemp -d)}"
cli=src/Engine.Cli/bin/Release/net10.0/Engine.Cli.dll
export ENGINE_CPU_THREADS=1 DOTNET_NOLOGO=1
# The demo's model and batch sizes (SFT: 64 rows; RL: 32 prompts x 8 samples, 2 mini-batches), few steps, no evaluation.
sft="sft --steps 12 --eval-examples 8 --set sft.eval_every=0 --device cpu"
rl="rl --steps 6 --eval-examples 8 --eval-every 0 --eval-samples 0 --device cpu"
for n in 1 2; do
    mpiexec.mpich -np $n dotnet $cli $sft --out "$out/sft-$n" --distributed mpi >/dev/null 2>&1
    mpiexec.mpich -np $n dotnet $cli $rl --out "$out/rl-$n" --distributed mpi >/dev/null 2>&1
done
python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
print("| phase | N | tokens/s (median, steps after the 2nd) | all-reduce bytes / step | all-reduce s / step (median) | waiting for the other rank s / step (median) |")
print("|---|---|---|---|---|---|")
for phase in ("sft", "rl"):
    for n in (1, 2):
        lines = [json.loads(l) for l in open(f"{out}/{phase}-{n}/metrics.jsonl") if l.strip()][2:]
        tps = statistics.median(l["tokens_per_second"] for l in lines)
        b = lines[0].get("all_reduce_bytes", 0)
        s = statistics.median(l.get("all_reduce_seconds", 0) for l in lines)
        w = statistics.median(l.get("all_reduce_wait_seconds", 0) for l in lines)
        print(f"| {phase} | {n} | {tps:,.0f} | {b:,} | {s:.4f} | {w:.4f} |")
PY

"""Times torch.mm (PyTorch's CPU BLAS) at the sizes of benchmarks/Engine.Benchmarks/GemmBenchmarks.cs.

Run: OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 benchmarks/pytorch/bench_gemm.py [--threads 2] [--min-time 1] [--json]

For each square size n and variant (NN: A B, NT: A B^T, TN: A^T B, all float32, row-major like the
engine) it times torch.mm on pre-transposed views (no copies inside the timed region), takes the
median over the timed calls and prints GFLOPS = 2 n^3 / median seconds (with --json, one JSON line per
case: {"n", "variant", "median_ms", "gflops", "best_gflops", "runs"}, as benchmarks/run.sh reads them).
"""
import argparse
import json
import statistics
import time

import torch


def bench(n, variant, min_time, min_runs, device="cpu"):
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(n, n, generator=g) - 0.5).to(device)
    b = (torch.rand(n, n, generator=g) - 0.5).to(device)
    c = torch.empty(n, n, device=device)
    sync = torch.cuda.synchronize if c.is_cuda else (lambda: None)
    # Views with the same memory layout as the engine's operands: A^T / B^T read a row-major matrix transposed.
    lhs = a.t() if variant[0] == "T" else a
    rhs = b.t() if variant[1] == "T" else b
    for _ in range(3):
        torch.mm(lhs, rhs, out=c)
    sync()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(times) < min_runs:
        t0 = time.perf_counter()
        torch.mm(lhs, rhs, out=c)
        sync()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return 2.0 * n ** 3 / med / 1e9, 2.0 * n ** 3 / min(times) / 1e9, med, len(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="*", default=[512, 1024, 2048])
    p.add_argument("--variants", nargs="*", default=["NN", "NT", "TN"])
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timed calls per case")
    p.add_argument("--min-runs", type=int, default=5)
    p.add_argument("--json", action="store_true", help="one JSON line per case instead of the table")
    p.add_argument("--device", default="cpu", help="torch device (cuda on a GPU machine)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 tensor cores (CUDA), as ENGINE_CUDA_PRECISION=tf32 does")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    if args.json:
        for n in args.sizes:
            for v in args.variants:
                gf, best, med, runs = bench(n, v, args.min_time, args.min_runs, args.device)
                print(json.dumps({"n": n, "variant": v, "median_ms": round(med * 1e3, 4), "gflops": round(gf, 2),
                                  "best_gflops": round(best, 2), "runs": runs}), flush=True)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'n':>6} {'variant':>7} {'median ms':>10} {'GFLOPS':>8} {'best':>8} {'runs':>5}")
    for n in args.sizes:
        for v in args.variants:
            gf, best, med, runs = bench(n, v, args.min_time, args.min_runs, args.device)
            print(f"{n:>6} {v:>7} {med * 1e3:>10.3f} {gf:>8.1f} {best:>8.1f} {runs:>5}")


if __name__ == "__main__":
    main()

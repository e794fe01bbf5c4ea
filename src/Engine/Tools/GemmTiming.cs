using System.Diagnostics;
using Engine.Core;
using Engine.Util;

namespace Engine.Tools;

/// <summary>
/// Times the engine's GEMM on one device the way benchmarks/pytorch/bench_gemm.py times torch.mm
/// (square n, row-major, NN / NT / TN, median of at least <c>minRuns</c> calls and <c>minSeconds</c>),
/// so that <c>engine bench-gemm</c> and the PyTorch script print comparable lines on a machine
/// without the BenchmarkDotNet suite (a lent GPU).
/// </summary>
internal static class GemmTiming
{
    /// <summary>One timed case: median and best GFLOPS (2 n^3 per call).</summary>
    public sealed record Result(int N, string Variant, double MedianMs, double Gflops, double BestGflops, int Runs);

    public static Result Measure(Accelerator acc, int n, string variant, double minSeconds, int minRuns)
    {
        if (n <= 0 || variant is not ("NN" or "NT" or "TN"))
        {
            throw new EngineException($"GEMM case {n} {variant}: n must be positive and the variant NN, NT or TN");
        }

        long size = (long)n * n;
        using DeviceBuffer a = acc.Allocate(size), b = acc.Allocate(size), c = acc.Allocate(size);
        var rng = new SplitMix64(1);
        acc.Upload(a.All, [.. Enumerable.Range(0, (int)size).Select(_ => (float)rng.NextDouble() - 0.5f)]);
        acc.Upload(b.All, [.. Enumerable.Range(0, (int)size).Select(_ => (float)rng.NextDouble() - 0.5f)]);
        bool transA = variant[0] == 'T', transB = variant[1] == 'T';
        return Time(n, variant, () => acc.Gemm(c.All, a.All, b.All, n, n, n, transA, transB), acc.Synchronize, minSeconds, minRuns);
    }

    /// <summary>
    /// Times an n x n x n GEMM call of any implementation (the ILGPU comparison uses it too): 3 warm-up
    /// calls, then calls each followed by <paramref name="synchronize"/> until both minimums are met.
    /// </summary>
    public static Result Time(int n, string variant, Action call, Action synchronize, double minSeconds, int minRuns)
    {
        for (int i = 0; i < 3; i++)
        {
            call();
        }

        synchronize();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (total.Elapsed.TotalSeconds < minSeconds || times.Count < minRuns)
        {
            long start = Stopwatch.GetTimestamp();
            call();
            synchronize();
            times.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
        }

        times.Sort();
        double median = times.Count % 2 == 1 ? times[times.Count / 2] : (times[(times.Count / 2) - 1] + times[times.Count / 2]) / 2;
        double flops = 2.0 * n * n * n;
        return new Result(n, variant, median * 1e3, flops / median / 1e9, flops / times[0] / 1e9, times.Count);
    }
}

using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Engine.Core;

namespace Engine.Tools;

/// <summary>
/// The machine's memory read bandwidth, the bound of a batch-1 decode step (which streams every
/// weight once): a sum over a buffer much larger than the caches, split into one contiguous part
/// per thread, best of several passes. <c>engine bench-bandwidth</c> prints it so the decode
/// figures can be given as a fraction of it.
/// </summary>
internal static unsafe class ReadBandwidth
{
    /// <summary>One measured case: the best and median pass in GB/s (10^9 bytes per second).</summary>
    public sealed record Result(int Threads, long Bytes, double BestGBps, double MedianGBps, int Passes);

    /// <summary>
    /// Reads <paramref name="bytes"/> (rounded down to whole 256-byte lines) with <paramref name="threads"/>
    /// threads, <paramref name="passes"/> timed passes after one untimed pass that touches every page.
    /// </summary>
    public static Result Measure(long bytes, int threads, int passes)
    {
        if (bytes < 1 << 20 || threads < 1 || passes < 1)
        {
            throw new EngineException($"bandwidth case: the buffer ({bytes} bytes) must be at least 1 MiB, threads ({threads}) and passes ({passes}) positive");
        }

        long floats = bytes / 256 * 64;
        float* data = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        try
        {
            new Span<float>(data, (int)Math.Min(floats, int.MaxValue)).Fill(1f);
            for (long i = int.MaxValue; i < floats; i++)
            {
                data[i] = 1f;
            }

            long chunk = floats / threads / 64 * 64;
            var seconds = new List<double>();
            using var start = new Barrier(threads + 1);
            using var end = new Barrier(threads + 1);
            var sums = new float[threads];   // written, so the reads cannot be optimised away
            int remaining = passes + 1;
            var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
            {
                for (int pass = 0; pass < passes + 1; pass++)
                {
                    start.SignalAndWait();
                    sums[t] += Sum(data + t * chunk, t == threads - 1 ? floats - t * chunk : chunk);
                    end.SignalAndWait();
                }
            }) { IsBackground = true }).ToArray();
            foreach (Thread w in workers)
            {
                w.Start();
            }

            for (; remaining > 0; remaining--)
            {
                start.SignalAndWait();
                long t0 = Stopwatch.GetTimestamp();
                end.SignalAndWait();
                double s = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                if (remaining <= passes)
                {
                    seconds.Add(s);
                }
            }

            foreach (Thread w in workers)
            {
                w.Join();
            }

            seconds.Sort();
            double read = floats * (double)sizeof(float);
            return new Result(threads, (long)read, read / seconds[0] / 1e9, read / seconds[seconds.Count / 2] / 1e9, passes);
        }
        finally
        {
            NativeMemory.AlignedFree(data);
        }
    }

    /// <summary>Sum of <paramref name="count"/> floats (a multiple of 64), four independent vector sums so the loads, not the adds, bound it.</summary>
    private static float Sum(float* p, long count)
    {
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        Vector256<float> s4 = default, s5 = default, s6 = default, s7 = default;
        for (long i = 0; i < count; i += 64)
        {
            s0 += Vector256.Load(p + i);
            s1 += Vector256.Load(p + i + 8);
            s2 += Vector256.Load(p + i + 16);
            s3 += Vector256.Load(p + i + 24);
            s4 += Vector256.Load(p + i + 32);
            s5 += Vector256.Load(p + i + 40);
            s6 += Vector256.Load(p + i + 48);
            s7 += Vector256.Load(p + i + 56);
        }

        return Vector256.Sum(((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)));
    }
}

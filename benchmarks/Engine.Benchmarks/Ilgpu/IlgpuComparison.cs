using System.Globalization;
using Engine.Tools;
using ILGPU.Runtime;
using EngineAccelerator = Engine.Core.Accelerator;

namespace Engine.Benchmarks.Ilgpu;

/// <summary>
/// <c>Engine.Benchmarks ilgpu-gemm [--sizes N ...] [--min-time S]</c>: the engine's GEMM written as an
/// ILGPU kernel (<see cref="IlgpuGemm"/>) beside the engine's own kernels, on every device both have:
/// ILGPU's CUDA accelerator against the engine's CUDA C GEMM where an NVIDIA GPU exists, and ILGPU's
/// CPU accelerator (an emulator) against the engine's CPU backend for the record. One JSON line per
/// case: {"impl", "device", "n", "variant", "median_ms", "gflops", "best_gflops", "runs"}.
/// </summary>
internal static class IlgpuComparison
{
    public static int Run(string[] args)
    {
        // Published as a single file for the GPU check, this program has no backend assemblies beside it to probe.
        global::Engine.Backends.Register(new global::Engine.Kernels.Cuda.CudaProvider(), new global::Engine.Kernels.OpenCL.ClProvider());
        int[]? sizes = null;
        double minTime = 0.5;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--sizes":
                    var list = new List<int>();
                    while (i + 1 < args.Length && int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out int n))
                    {
                        list.Add(n);
                        i++;
                    }

                    sizes = [.. list];
                    break;
                case "--min-time" when i + 1 < args.Length:
                    minTime = double.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                default:
                    Console.Error.WriteLine($"unknown argument '{args[i]}': expected --sizes N... --min-time S");
                    return 2;
            }
        }

        using (IlgpuGemm? cuda = IlgpuGemm.OnCuda())
        {
            if (cuda is null)
            {
                Console.Error.WriteLine("ILGPU finds no CUDA device: the CUDA comparison is skipped");
            }
            else
            {
                Compare(cuda, "cuda", sizes ?? [1024, 2048, 4096], minTime);
            }
        }

        // The emulator: small sizes only (a 256^3 GEMM takes seconds).
        using IlgpuGemm cpu = IlgpuGemm.OnCpu();
        Compare(cpu, "cpu", sizes is null ? [64, 128] : [.. sizes.Where(n => n <= 256)], minTime);
        return 0;
    }

    private static void Compare(IlgpuGemm ilgpu, string engineDevice, int[] sizes, double minTime)
    {
        using EngineAccelerator engine = global::Engine.Backends.Registry.Open(engineDevice);
        foreach (int n in sizes)
        {
            foreach (string variant in new[] { "NN", "NT", "TN" })
            {
                bool transA = variant[0] == 'T', transB = variant[1] == 'T';
                var rng = new Random(1);
                float[] host = [.. Enumerable.Range(0, n * n).Select(_ => (float)rng.NextDouble() - 0.5f)];
                using var a = ilgpu.Accelerator.Allocate1D(host);
                using var b = ilgpu.Accelerator.Allocate1D(host);
                using var c = ilgpu.Accelerator.Allocate1D<float>((long)n * n);
                Print("ilgpu", $"ilgpu-{engineDevice}", GemmTiming.Time(n, variant, () => ilgpu.Run(c.View, a.View, b.View, n, n, n, transA, transB),
                    ilgpu.Accelerator.Synchronize, minTime, 3));
                Print("engine", engine.Info.Spec, GemmTiming.Measure(engine, n, variant, minTime, 3));
            }
        }
    }

    private static void Print(string impl, string device, GemmTiming.Result r) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"impl\": \"{impl}\", \"device\": \"{device}\", \"n\": {r.N}, \"variant\": \"{r.Variant}\", \"median_ms\": {r.MedianMs:F4}, \"gflops\": {r.Gflops:F3}, \"best_gflops\": {r.BestGflops:F3}, \"runs\": {r.Runs}}}"));
}

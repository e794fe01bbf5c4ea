using System.CommandLine;
using System.Globalization;
using Engine.Core;
using Engine.Tools;

namespace Engine.Cli;

/// <summary><c>engine bench-gemm</c>: GEMM GFLOPS on one device, one JSON line per case (as benchmarks/pytorch/bench_gemm.py --json prints them).</summary>
internal static class BenchGemmCommand
{
    public static Command Create()
    {
        var device = new Option<string?>("--device") { Description = "cpu, opencl[:N], cuda[:N] or auto (default: ENGINE_DEVICE, then cpu)" };
        var sizes = new Option<int[]>("--sizes") { Description = "square sizes n", DefaultValueFactory = _ => [512, 1024, 2048], AllowMultipleArgumentsPerToken = true };
        var variants = new Option<string[]>("--variants") { Description = "NN, NT, TN", DefaultValueFactory = _ => ["NN", "NT", "TN"], AllowMultipleArgumentsPerToken = true };
        var minTime = new Option<double>("--min-time") { Description = "seconds of timed calls per case", DefaultValueFactory = _ => 1.0 };
        var minRuns = new Option<int>("--min-runs") { Description = "timed calls per case at least", DefaultValueFactory = _ => 5 };
        var command = new Command("bench-gemm", "Time the engine's GEMM (square, fp32 in and out) on one device; one JSON line per size and variant.")
        {
            device, sizes, variants, minTime, minRuns,
        };
        command.SetAction(r => CommandLine.Guard(() =>
        {
            using Accelerator acc = Backends.Registry.Open(r.GetValue(device));
            foreach (int n in r.GetValue(sizes)!)
            {
                foreach (string variant in r.GetValue(variants)!)
                {
                    var x = GemmTiming.Measure(acc, n, variant.ToUpperInvariant(), r.GetValue(minTime), Math.Max(1, r.GetValue(minRuns)));
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{{\"device\": \"{acc.Info.Spec}\", \"n\": {x.N}, \"variant\": \"{x.Variant}\", \"median_ms\": {x.MedianMs:F4}, \"gflops\": {x.Gflops:F2}, \"best_gflops\": {x.BestGflops:F2}, \"runs\": {x.Runs}}}"));
                }
            }

            return 0;
        }));
        return command;
    }
}

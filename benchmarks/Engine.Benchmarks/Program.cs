using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Engine.Benchmarks;

/// <summary>
/// Entry point: <c>dotnet run -c Release --project benchmarks/Engine.Benchmarks -- --filter '*Gemm*'</c>
/// (add <c>--job short</c> for a quicker, rougher run); <c>-- pytorch --out FILE</c> runs the
/// PyTorch side-by-side scripts instead (<see cref="PyTorchReferences"/>). <c>benchmarks/run.sh</c>
/// drives both.
/// </summary>
/// <remarks>
/// Every suite runs in-process: BenchmarkDotNet 0.14 predates net10.0, so its default
/// out-of-process toolchain cannot be relied on to generate and build the child project, while
/// the in-process toolchain runs the benchmarks in this (Release-built) host process. Hence
/// <c>--inProcess</c> is added to the arguments unless given.
/// </remarks>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args is ["pytorch", .. var rest])
        {
            return PyTorchReferences.Run(rest);
        }

        if (args is ["ilgpu-gemm", .. var ilgpuArgs])
        {
            return Ilgpu.IlgpuComparison.Run(ilgpuArgs);
        }

        string[] withInProcess = args.Contains("--inProcess", StringComparer.OrdinalIgnoreCase) ? args : [.. args, "--inProcess"];
        Summary[] summaries = [.. BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(withInProcess)];
        // BenchmarkDotNet prints NA for a benchmark that threw and still exits 0; CI must see it fail.
        var failed = summaries.SelectMany(s => s.BenchmarksCases.Where(c => s[c] is not { Success: true, ResultStatistics: not null })
            .Select(c => FullNameProvider.GetBenchmarkName(c))).ToList();
        foreach (string name in failed)
        {
            Console.Error.WriteLine($"benchmark failed: {name}");
        }

        return failed.Count > 0 || summaries.Any(s => s.HasCriticalValidationErrors) ? 1 : 0;
    }
}

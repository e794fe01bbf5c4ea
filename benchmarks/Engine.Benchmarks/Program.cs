using BenchmarkDotNet.Running;

namespace Engine.Benchmarks;

/// <summary>
/// Entry point: <c>dotnet run -c Release --project benchmarks/Engine.Benchmarks -- --filter '*Gemm*'</c>
/// (add <c>--job short</c> for a quicker, rougher run).
/// </summary>
/// <remarks>
/// Every suite runs in-process: BenchmarkDotNet 0.14 predates net10.0, so its default
/// out-of-process toolchain cannot be relied on to generate and build the child project, while
/// the in-process toolchain runs the benchmarks in this (Release-built) host process. Hence
/// <c>--inProcess</c> is added to the arguments unless given.
/// </remarks>
internal static class Program
{
    private static void Main(string[] args)
    {
        string[] withInProcess = args.Contains("--inProcess", StringComparer.OrdinalIgnoreCase) ? args : [.. args, "--inProcess"];
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(withInProcess);
    }
}

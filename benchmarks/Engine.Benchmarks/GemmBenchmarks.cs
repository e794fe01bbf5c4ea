using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Engine.Core;

namespace Engine.Benchmarks;

/// <summary>
/// Square GEMM, C[N, N] = op(A) op(B), in the three forms training uses: NN (input gradient
/// dX = dY W), NT (Linear forward Y = X W^T) and TN (weight gradient dW = dY^T X), on every
/// backend (<see cref="BenchmarkDevices"/>: the CPU on all threads, OpenCL devices ...). Each
/// invocation waits for the device, so asynchronous backends are timed to completion.
/// </summary>
/// <remarks>
/// Run: <c>dotnet run -c Release --project benchmarks/Engine.Benchmarks -- --filter '*Gemm*'</c>
/// (one backend: <c>ENGINE_BENCH_DEVICES=opencl:0</c>).
/// Compare with <c>OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 benchmarks/pytorch/bench_gemm.py</c>.
/// </remarks>
[MemoryDiagnoser]
[Config(typeof(GemmBenchmarkConfig))]
public class GemmBenchmarks
{
    private Accelerator accelerator = null!;
    private DeviceBuffer a = null!;
    private DeviceBuffer b = null!;
    private DeviceBuffer c = null!;

    /// <summary>Device spec: cpu, opencl:0 ...</summary>
    [ParamsSource(nameof(DeviceSpecs))]
    public string Device { get; set; } = "cpu";

    /// <summary>Devices to run on.</summary>
    public static IEnumerable<string> DeviceSpecs => BenchmarkDevices.Specs;

    /// <summary>Matrix size: m = n = k.</summary>
    [ParamsSource(nameof(Sizes))]
    public int N { get; set; }

    /// <summary>NN, NT (B transposed) or TN (A transposed).</summary>
    [ParamsSource(nameof(Variants))]
    public string Variant { get; set; } = "NN";

    /// <summary>The sizes run (the PyTorch references use the same).</summary>
    public static IReadOnlyList<int> Sizes { get; } = [512, 1024, 2048];

    /// <summary>The variants run.</summary>
    public static IReadOnlyList<string> Variants { get; } = ["NN", "NT", "TN"];

    /// <summary>Allocates and fills the operands.</summary>
    [GlobalSetup]
    public void Setup()
    {
        accelerator = BenchmarkDevices.Open(Device);
        long size = (long)N * N;
        a = accelerator.Allocate(size);
        b = accelerator.Allocate(size);
        c = accelerator.Allocate(size);
        accelerator.Upload(a.All, KernelBenchmarkBase.RandomValues(size, 1));
        accelerator.Upload(b.All, KernelBenchmarkBase.RandomValues(size, 2));
    }

    /// <summary>One product, waited for.</summary>
    [Benchmark]
    public void Gemm()
    {
        accelerator.Gemm(c.All, a.All, b.All, N, N, N, transA: Variant[0] == 'T', transB: Variant[1] == 'T');
        accelerator.Synchronize();
    }

    /// <summary>Releases the buffers and the accelerator.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        a.Dispose();
        b.Dispose();
        c.Dispose();
        accelerator.Dispose();
    }
}

/// <summary>Adds the GFLOPS column to the default (in-process) configuration.</summary>
public sealed class GemmBenchmarkConfig : ManualConfig
{
    /// <summary>Creates the configuration.</summary>
    public GemmBenchmarkConfig() => AddColumn(new GflopsColumn());
}

using Engine.Core;
using Engine.Kernels.OpenCL;
using Engine.Kernels.OpenCL.Interop;
using Engine.Tests.Support;
using Engine.Training;
using Xunit.Abstractions;

namespace Engine.Tests.Backends;

/// <summary>Device presence and probing (every machine), and OpenCL-specific behaviour: errors, the program cache, device-side index checks, reproducibility.</summary>
public sealed class OpenClBackendTests(BackendFixture fx, ITestOutputHelper output) : IClassFixture<BackendFixture>
{
    [Fact]
    public void OpenCL_platform_is_present_in_CI()
    {
        IReadOnlyList<DeviceInfo> devices = Devices.List();
        foreach (DeviceInfo d in devices)
        {
            output.WriteLine($"{d.Spec}: {d.Name}, {d.MemoryBytes >> 20} MiB, {d.ComputeUnits} units; {d.Details}");
        }

        output.WriteLine($"OpenCL probe: {(ClProvider.ProbeError ?? "ok")}");
        if (BackendDevices.IsCi)
        {
            Assert.True(devices.Any(d => d.Kind == DeviceKind.OpenCL),
                $"CI=true but no OpenCL device was found ({ClProvider.ProbeError ?? "no platform"}): .ci/run installs PoCL so the OpenCL kernels run in CI");
        }

        // Probing is stable and every listed device resolves back to itself by its spec.
        Assert.Equal(devices, Devices.List());
        Assert.Equal(DeviceKind.Cpu, devices[0].Kind);
        foreach (DeviceInfo d in devices)
        {
            Assert.Equal(d, Devices.Resolve(d.Spec));
        }
    }

    [Fact]
    public void Error_codes_are_named()
    {
        Assert.Equal("CL_OUT_OF_RESOURCES", ClErrors.Name(-5));
        Assert.Equal("CL_INVALID_WORK_GROUP_SIZE", ClErrors.Name(-54));
        Assert.Equal("CL_PLATFORM_NOT_FOUND_KHR", ClErrors.Name(-1001));
        Assert.Equal("unknown OpenCL error", ClErrors.Name(-12345));
        var e = new ClException("clEnqueueNDRangeKernel", -5, "gemm");
        Assert.Equal("clEnqueueNDRangeKernel failed: CL_OUT_OF_RESOURCES (-5): gemm", e.Message);
        Assert.IsAssignableFrom<EngineException>(e);
    }

    [Theory]
    [BackendDevices(DeviceKind.OpenCL)]
    public void A_compile_error_reports_the_build_log(string device)
    {
        ClDeviceContext context = Handle(device).Context;
        const string source = "__kernel void broken(__global float* x) { x[0] = undefined_name; }";
        var e = Assert.Throws<ClException>(() => context.Program("Broken.cl", source, "-cl-std=CL1.2"));
        output.WriteLine(e.Message);
        Assert.Equal("clBuildProgram", e.Function);
        Assert.Contains("CL_BUILD_PROGRAM_FAILURE", e.Message, StringComparison.Ordinal);
        Assert.Contains("undefined_name", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [BackendDevices(DeviceKind.OpenCL)]
    public void Programs_are_cached_in_memory_and_as_binaries(string device)
    {
        ClDeviceContext context = Handle(device).Context;
        const string source = "__kernel void twice(__global float* x) { x[get_global_id(0)] *= 2.0f; }";
        nint first = context.Program("Twice.cl", source, "-cl-std=CL1.2");
        Assert.Equal(first, context.Program("Twice.cl", source, "-cl-std=CL1.2"));
        Assert.NotEqual(context.Key(source, "-cl-std=CL1.2"), context.Key(source, "-cl-std=CL1.2 -D X=1"));
        if (ClBinaryCache.Directory is null)
        {
            output.WriteLine("binary cache disabled (ENGINE_OPENCL_CACHE=off)");
            return;
        }

        byte[]? binary = ClBinaryCache.TryRead(context.Key(source, "-cl-std=CL1.2"));
        Assert.NotNull(binary);
        nint reloaded = context.TryBuildFromBinary(binary, "-cl-std=CL1.2");
        Assert.NotEqual(0, reloaded);
        unsafe
        {
            Assert.Equal(0, ClNative.ReleaseProgram(reloaded));
        }

        Assert.Equal(0, context.TryBuildFromBinary([1, 2, 3, 4], "-cl-std=CL1.2")); // a corrupt binary is refused, not fatal
    }

    [Theory]
    [BackendDevices(DeviceKind.OpenCL)]
    public void Both_gemm_kernels_match_the_cpu(string device)
    {
        // The parity suite runs the device's default kernel; this runs the other one too (the tiled
        // local-memory kernel of GPUs, or the register-blocked kernels of CPU devices).
        var acc = (ClAccelerator)fx.Device(device);
        bool original = acc.TiledGemm;
        try
        {
            foreach (bool tiled in new[] { true, false })
            {
                acc.TiledGemm = tiled;
                foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 13, 5), (3, 70, 33), (65, 33, 70), (130, 67, 129) })
                {
                    foreach (var (transA, transB, alpha, beta) in new[] { (false, false, 1f, 0f), (false, true, 0.5f, 1f), (true, false, 1f, 1f), (true, true, -1f, 0.25f) })
                    {
                        var ops = new Operands().F("c", TestData.Uniform(1, (long)m * n)).F("a", TestData.Uniform(2, (long)m * k))
                            .F("b", TestData.Uniform(3, (long)k * n)).F("bias", TestData.Uniform(4, n));
                        string form = (transA ? "T" : "N") + (transB ? "T" : "N");
                        Parity.Check(fx, device, output, $"Gemm {(tiled ? "tiled" : "cpu-kernel")} {form} {m}x{n}x{k}", ops,
                            (a, v) => a.Gemm(v["c"], v["a"], v["b"], m, n, k, transA, transB, alpha, beta, v["bias"]), ("c", 1e-5));
                    }
                }
            }
        }
        finally
        {
            acc.TiledGemm = original;
        }
    }

    [Theory]
    [BackendDevices(DeviceKind.OpenCL)]
    public void Bad_indices_give_nan_rows_instead_of_stray_accesses(string device)
    {
        Accelerator acc = fx.Device(device);
        const int c = 5;
        using DeviceBuffer wte = acc.Put(TestData.Uniform(1, 4 * c));
        using DeviceBuffer tokens = acc.Put(new[] { 1, 4, -1, 3 });
        using DeviceBuffer outBuf = acc.Allocate(4 * c);
        acc.EmbeddingForward(outBuf.All, tokens.All, default, wte.All, default, 4, c);
        float[] result = acc.Get(outBuf);
        Assert.DoesNotContain(result[..c], float.IsNaN);
        Assert.All(result[c..(3 * c)], x => Assert.True(float.IsNaN(x)));
        Assert.DoesNotContain(result[(3 * c)..], float.IsNaN);

        using DeviceBuffer rows = acc.Put(new[] { 0, 7 });
        using DeviceBuffer dst = acc.Allocate(2 * c);
        acc.GatherRows(dst.All, wte.All, rows.All, 2, c);
        float[] gathered = acc.Get(dst);
        Assert.DoesNotContain(gathered[..c], float.IsNaN);
        Assert.All(gathered[c..], x => Assert.True(float.IsNaN(x)));
    }

    [Theory]
    [BackendDevices(DeviceKind.OpenCL)]
    public void Train_steps_are_reproducible_bit_for_bit(string device)
    {
        Accelerator acc = fx.Device(device);
        var config = global::Engine.Model.ModelConfig.Gpt2(vocab: 61, dim: 32, layers: 2, heads: 4, maxPositions: 40);
        float[] Run()
        {
            using var bench = new SyntheticBenchmark(acc, config, 2, 17, seed: 3);
            bench.Step();
            bench.Step();
            return [.. acc.ToArray(bench.Model.Grads!.All), .. acc.ToArray(bench.Model.Params.All)];
        }

        float[] a = Run(), b = Run();
        Assert.True(a.AsSpan().SequenceEqual(b), "two identical train runs on the device differ");
    }

    [Theory]
    [BackendDevices(DeviceKind.OpenCL)]
    public void Train_steps_allocate_nothing_on_the_host(string device)
    {
        Accelerator acc = fx.Device(device);
        var config = global::Engine.Model.ModelConfig.LlamaFamily(global::Engine.Model.ModelFamily.Qwen2, vocab: 61, dim: 32, layers: 2,
            heads: 4, kvHeads: 2, ffn: 40, maxPositions: 40, tied: false);
        using var bench = new SyntheticBenchmark(acc, config, 2, 17, seed: 3);
        bench.Step();
        bench.Step();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++)
        {
            bench.Step();
        }

        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        output.WriteLine($"{bytes} bytes allocated over 5 steps");
        Assert.True(bytes <= 256, $"5 train steps allocated {bytes} bytes on the host (kernel launches must not allocate)");
    }

    private static ClDeviceHandle Handle(string device)
    {
        DeviceInfo info = Devices.Resolve(device);
        return ClProvider.Find(info.Index) ?? throw new InvalidOperationException($"{device} is not an OpenCL device");
    }
}

/// <summary>Device selection with "auto".</summary>
public sealed class AutoDeviceTests
{
    [Fact]
    public void Auto_never_picks_an_opencl_platform_that_runs_on_the_cpu()
    {
        DeviceInfo auto = Engine.Devices.Resolve("auto");
        Assert.True(auto.Kind == DeviceKind.Cpu || !auto.IsHostCpu, $"auto chose {auto} ({auto.Details})");
        Assert.All(Engine.Devices.List().Where(d => d.Kind == DeviceKind.OpenCL && d.Details.Contains("; CPU;", StringComparison.Ordinal)),
            d => Assert.True(d.IsHostCpu, $"{d} runs on the CPU but is not marked so"));
    }
}

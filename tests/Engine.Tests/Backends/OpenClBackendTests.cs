using Engine.Core;
using Engine.Kernels.OpenCL;
using Engine.Kernels.OpenCL.Interop;
using Xunit.Abstractions;

namespace Engine.Tests.Backends;

/// <summary>Device presence and probing (every machine), and OpenCL-specific behaviour: errors, the program cache, the CPU-device GEMM (the shared GPU behaviour is in <see cref="GpuBackendTests"/>).</summary>
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
            Assert.True(devices.Any(d => d.Provider == ClProvider.ProviderName),
                $"CI=true but no OpenCL device was found ({ClProvider.ProbeError ?? "no platform"}): .ci/run installs PoCL so the OpenCL kernels run in CI");
        }

        // Probing is stable and every listed device resolves back to itself by its spec.
        Assert.Equal(devices, Devices.List());
        Assert.Equal(Engine.Kernels.Cpu.CpuProvider.ProviderName, devices[0].Provider);
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
    [BackendDevices(ClProvider.ProviderName)]
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
    [BackendDevices(ClProvider.ProviderName)]
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
    [BackendDevices(ClProvider.ProviderName)]
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
                GemmParityTests.CheckEveryForm(fx, device, output, tiled ? "tiled" : "cpu-kernel", GemmParityTests.Shapes, 1e-5);
            }
        }
        finally
        {
            acc.TiledGemm = original;
        }
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
        Assert.True(auto.Provider == Engine.Kernels.Cpu.CpuProvider.ProviderName || !auto.IsHostCpu, $"auto chose {auto} ({auto.Details})");
        Assert.All(Engine.Devices.List().Where(d => d.Provider == ClProvider.ProviderName && d.Details.Contains("; CPU;", StringComparison.Ordinal)),
            d => Assert.True(d.IsHostCpu, $"{d} runs on the CPU but is not marked so"));
    }
}

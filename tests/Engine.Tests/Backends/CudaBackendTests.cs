using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using Engine.Core;
using Engine.Kernels.Cuda;
using Engine.Kernels.Gpu;
using Engine.Kernels.Cuda.Interop;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Engine.Tests.Backends;

/// <summary>
/// The CUDA backend without a GPU (probing, and every kernel compiled by the engine's own NVRTC
/// binding for sm_80 and sm_90), and with one (CUDA-specific behaviour; the op-by-op comparison
/// with the CPU backend is the parity suite, which covers CUDA devices once they exist).
/// </summary>
public sealed partial class CudaBackendTests(BackendFixture fx, ITestOutputHelper output) : IClassFixture<BackendFixture>
{
    [Fact]
    public void Probing_never_throws_and_finds_nothing_without_a_driver()
    {
        var provider = new CudaProvider();
        IReadOnlyList<DeviceInfo> devices = provider.Probe();
        output.WriteLine($"CUDA probe: {devices.Count} device(s); {CudaProvider.ProbeError ?? "ok"}");
        foreach (DeviceInfo d in devices)
        {
            output.WriteLine($"{d.Spec}: {d.Name}, {d.MemoryBytes >> 20} MiB, {d.ComputeUnits} SMs; {d.Details}");
        }

        Assert.Equal(CudaProvider.ProviderName, provider.Name);
        Assert.Equal(devices, provider.Probe());
        Assert.All(devices, d => Assert.Equal(CudaProvider.ProviderName, d.Provider));
        if (!CuNative.TryLoad())
        {
            Assert.Empty(devices);
            Assert.NotNull(CudaProvider.ProbeError);
            var e = Assert.Throws<EngineException>(() => Devices.Resolve("cuda:0"));
            Assert.Contains("no cuda devices", e.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [NvrtcSources]
    public void Every_kernel_compiles_to_cubin(string file, string arch)
    {
        RequireNvrtc();
        string source = CudaSources.For(file);
        foreach (string options in OptionsFor(file))
        {
            CudaImage image = CudaCompiler.Compile(file, source, options, $"--gpu-architecture={arch}", cubin: true);
            output.WriteLine($"{file} {arch} '{options}': {image.Data.Length} bytes of CUBIN (NVRTC {CudaCompiler.Version})");
            Assert.True(image.IsCubin);
            Assert.NotEmpty(image.Data);
            Assert.Equal(0x7F, image.Data[0]); // an ELF image
            Assert.Equal((byte)'E', image.Data[1]);
        }
    }

    [Theory]
    [NvrtcSources]
    public void Every_kernel_the_host_launches_is_an_unmangled_entry_point(string file, string arch)
    {
        RequireNvrtc();
        string ptxArch = arch.Replace("sm_", "compute_", StringComparison.Ordinal);
        CudaImage image = CudaCompiler.Compile(file, CudaSources.For(file), OptionsFor(file)[0], $"--gpu-architecture={ptxArch}", cubin: false);
        Assert.False(image.IsCubin);
        Assert.Equal(0, image.Data[^1]); // cuModuleLoadData wants the terminating NUL
        string ptx = Encoding.UTF8.GetString(image.Data, 0, image.Data.Length - 1);
        HashSet<string> entries = [.. EntryPattern().Matches(ptx).Select(m => m.Groups[1].Value)];
        output.WriteLine($"{file}: {string.Join(", ", entries)}");
        IEnumerable<string> launched = file == "Attention.cu"
            ? ["attention_forward", "attention_backward_di", "attention_backward_dkdv", "attention_backward_dq"]
            : GpuKernels.In(".cu").Where(k => GpuKernels.Family(k) + ".cu" == file).Select(GpuKernels.Name);
        Assert.NotEmpty(launched);
        foreach (string name in launched)
        {
            Assert.Contains(name, entries);
        }
    }

    [Fact]
    public void Every_kernel_in_the_table_names_an_embedded_file()
    {
        IReadOnlyList<string> files = CudaSources.Files;
        Assert.Equal(
            ["Activation.cu", "Attention.cu", "CrossEntropy.cu", "Embedding.cu", "Gemm.cu", "KvCache.cu", "Norm.cu", "Optimizer.cu", "PolicyLoss.cu", "Rope.cu", "Sampling.cu"],
            files);
        foreach (GpuKernel id in GpuKernels.In(".cu"))
        {
            string file = GpuKernels.Family(id) + ".cu";
            Assert.Contains(file, files);
            Assert.Contains($"void {GpuKernels.Name(id)}(", CudaSources.For(file), StringComparison.Ordinal);
        }
    }

    [NvrtcFact]
    public void A_compile_error_reports_the_nvrtc_log()
    {
        RequireNvrtc();
        const string source = "extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }";
        var e = Assert.Throws<CudaException>(() => CudaCompiler.Compile("Broken.cu", source, "", "--gpu-architecture=sm_80", cubin: true));
        output.WriteLine(e.Message);
        Assert.Equal("nvrtcCompileProgram", e.Function);
        Assert.Contains("NVRTC_ERROR_COMPILATION", e.Message, StringComparison.Ordinal);
        Assert.Contains("undefined_name", e.Message, StringComparison.Ordinal);
        Assert.Contains("Broken.cu", e.Message, StringComparison.Ordinal);
    }

    [NvrtcFact]
    public void The_architecture_target_is_cubin_for_known_archs_and_ptx_beyond()
    {
        RequireNvrtc();
        Assert.Equal(("--gpu-architecture=sm_80", true), CudaCompiler.Target(8, 0));
        (string option, bool cubin) = CudaCompiler.Target(99, 0); // an architecture no NVRTC knows yet
        output.WriteLine($"sm_990 -> {option}");
        if (NvrtcNative.SupportedArchs().Length > 0)
        {
            Assert.False(cubin);
            Assert.StartsWith("--gpu-architecture=compute_", option, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Driver_and_nvrtc_errors_are_named()
    {
        var e = new CudaException("cuMemAlloc_v2", 2, "CUDA_ERROR_OUT_OF_MEMORY (2, out of memory)", "4096 bytes");
        Assert.Equal("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (2, out of memory): 4096 bytes", e.Message);
        Assert.IsAssignableFrom<EngineException>(e);
        if (CudaCompiler.IsAvailable)
        {
            Assert.Equal("NVRTC_ERROR_COMPILATION (6)", NvrtcNative.Describe(6));
        }
    }

    [Fact]
    public void The_gemm_precision_is_fp32_unless_tf32_is_asked_for()
    {
        Assert.False(CudaAccelerator.ParsePrecision(null));
        Assert.False(CudaAccelerator.ParsePrecision(""));
        Assert.False(CudaAccelerator.ParsePrecision(" FP32 "));
        Assert.True(CudaAccelerator.ParsePrecision("tf32"));
        Assert.True(CudaAccelerator.ParsePrecision("TF32"));
        var e = Assert.Throws<EngineException>(() => CudaAccelerator.ParsePrecision("bf16"));
        Assert.Contains(CudaAccelerator.PrecisionVariable, e.Message, StringComparison.Ordinal);
    }

    // ---- on a CUDA device ----

    [Theory]
    [BackendDevices(CudaProvider.ProviderName)]
    public void Tf32_gemm_matches_the_cpu_to_tf32_precision(string device)
    {
        var acc = (CudaAccelerator)fx.Device(device);
        if (acc.Info.Details.StartsWith("sm_7", StringComparison.Ordinal) || acc.Info.Details.StartsWith("sm_6", StringComparison.Ordinal))
        {
            output.WriteLine("no TF32 tensor cores before sm_80");
            return;
        }

        bool original = acc.Tf32Gemm;
        try
        {
            acc.Tf32Gemm = true;
            // TF32 keeps 10 mantissa bits: relative error about 1e-3 per product, averaging out over k.
            GemmParityTests.CheckEveryForm(fx, device, output, "tf32", [(1, 1, 1), (7, 13, 5), (65, 33, 70), (130, 67, 129), (256, 192, 320)], 5e-3);
        }
        finally
        {
            acc.Tf32Gemm = original;
        }
    }

    [Theory]
    [BackendDevices(CudaProvider.ProviderName)]
    public void Modules_are_cached_in_memory_and_on_disk(string device)
    {
        var acc = (CudaAccelerator)fx.Device(device);
        CudaDeviceContext context = acc.Context;
        const string source = "extern \"C\" __global__ void twice(float* x) { x[threadIdx.x] *= 2.0f; }";
        nint first = context.Module("Twice.cu", source, "");
        Assert.Equal(first, context.Module("Twice.cu", source, ""));
        Assert.NotEqual(context.Key(source, ""), context.Key(source, "-DX=1"));
        if (CudaBinaryCache.Directory is null)
        {
            output.WriteLine("image cache disabled (ENGINE_CUDA_CACHE=off)");
            return;
        }

        CudaImage? image = CudaBinaryCache.TryRead(context.Key(source, ""), context.Target);
        Assert.NotNull(image);
        Assert.Equal(context.IsCubin, image.IsCubin);
    }

    /// <summary>Fails with the reason when NVRTC is missing (reached only in CI, or when run explicitly).</summary>
    private static void RequireNvrtc() =>
        Assert.True(CudaCompiler.IsAvailable,
            $"NVRTC is not available ({CudaCompiler.UnavailableReason}): .ci/run installs Debian's libnvrtc11.2 (non-free) so every CUDA kernel compiles in CI");

    /// <summary>The option sets a file is compiled with at run time (attention: per head size and tile).</summary>
    private static string[] OptionsFor(string file) => file == "Attention.cu"
        ? [CudaAccelerator.AttentionOptions(64, 32), CudaAccelerator.AttentionOptions(128, 16), CudaAccelerator.AttentionOptions(80, 16)]
        : [CudaAccelerator.BaseOptions];

    [GeneratedRegex(@"\.entry\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(")]
    private static partial Regex EntryPattern();
}

/// <summary>
/// Theory data: one row per (embedded .cu file, architecture) for sm_80 and sm_90. Skipped, with
/// the reason, when NVRTC is not installed, except in CI (CI=true), where the rows run and fail.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class NvrtcSourcesAttribute : DataAttribute
{
    /// <summary>Why the rows are skipped on this machine.</summary>
    public static string SkipReason =>
        $"NVRTC is not installed ({CudaCompiler.UnavailableReason}), so the CUDA kernels cannot be compiled here; " +
        "install it (Debian: apt-get install libnvrtc11.2 from non-free; or a CUDA toolkit). In CI (CI=true) these rows fail instead.";

    /// <inheritdoc />
    public override string? Skip
    {
        get => CudaCompiler.IsAvailable || BackendDevices.IsCi ? null : SkipReason;
        set => throw new NotSupportedException("the skip reason is decided by the NVRTC present");
    }

    /// <inheritdoc />
    public override IEnumerable<object[]> GetData(MethodInfo testMethod)
    {
        foreach (string file in CudaSources.Files)
        {
            foreach (string arch in new[] { "sm_80", "sm_90" })
            {
                yield return [file, arch];
            }
        }
    }
}

/// <summary>A fact that needs NVRTC: skipped with the reason without it, except in CI (CI=true), where it runs and fails.</summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class NvrtcFactAttribute : FactAttribute
{
    /// <inheritdoc />
    public override string? Skip
    {
        get => CudaCompiler.IsAvailable || BackendDevices.IsCi ? null : NvrtcSourcesAttribute.SkipReason;
        set => throw new NotSupportedException("the skip reason is decided by the NVRTC present");
    }
}

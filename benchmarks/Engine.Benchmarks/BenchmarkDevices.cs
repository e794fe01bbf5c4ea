using Engine.Core;

namespace Engine.Benchmarks;

/// <summary>
/// The devices a backend-parameterised suite runs on: <c>cpu</c> plus every non-CPU device this
/// machine has (e.g. <c>opencl:0</c> with PoCL or a GPU driver), or the comma-separated specs in
/// <c>ENGINE_BENCH_DEVICES</c> (e.g. <c>ENGINE_BENCH_DEVICES=opencl:0</c>) when set.
/// </summary>
public static class BenchmarkDevices
{
    /// <summary>The environment variable that overrides the device list.</summary>
    public const string EnvironmentVariable = "ENGINE_BENCH_DEVICES";

    /// <summary>Device specs, usable as a <c>[ParamsSource]</c>.</summary>
    public static IEnumerable<string> Specs
    {
        get
        {
            return BenchmarkEnvironment.List(EnvironmentVariable)
                ?? ["cpu", .. Devices.List().Where(d => d.Provider != Engine.Kernels.Cpu.CpuProvider.ProviderName).Select(d => d.Spec)];
        }
    }

    /// <summary>Opens the accelerator of a spec.</summary>
    internal static Accelerator Open(string spec) => Backends.Registry.Open(spec);
}

using System.Reflection;
using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Kernels.Cuda;
using Engine.Kernels.OpenCL;
using Engine.Tests.Support;

namespace Engine.Tests.Backends;

/// <summary>
/// The GPU backends as plug-ins: the engine and Core reference no GPU backend, the backends are
/// found at run time by their assembly attribute, and the registry parses specs by provider name.
/// </summary>
public sealed class PluginTests
{
    private static readonly string[] GpuAssemblies = ["Engine.Kernels.Gpu", "Engine.Kernels.OpenCL", "Engine.Kernels.Cuda"];

    [Fact]
    public void The_engine_and_core_reference_no_gpu_backend()
    {
        foreach (Assembly assembly in new[] { typeof(Devices).Assembly, typeof(AcceleratorRegistry).Assembly, typeof(CpuProvider).Assembly })
        {
            string[] references = [.. assembly.GetReferencedAssemblies().Select(a => a.Name ?? "")];
            Assert.DoesNotContain(references, GpuAssemblies.Contains);
        }
    }

    [Fact]
    public void Each_gpu_backend_declares_its_provider_by_attribute()
    {
        Assert.Equal([typeof(CudaProvider)], typeof(CudaProvider).Assembly.GetCustomAttributes<AcceleratorProviderAttribute>().Select(a => a.ProviderType));
        Assert.Equal([typeof(ClProvider)], typeof(ClProvider).Assembly.GetCustomAttributes<AcceleratorProviderAttribute>().Select(a => a.ProviderType));
    }

    [Fact]
    public void The_engine_finds_the_backends_next_to_its_assembly()
    {
        // The test binaries hold the backend assemblies beside Engine.dll, as an app that references the package does.
        Assert.Equal(["cpu", "cuda", "opencl"], global::Engine.Backends.Registry.ProviderNames);
        global::Engine.Backends.Register(new CudaProvider(), new ClProvider()); // a host registering what probing found changes nothing
        Assert.Equal(["cpu", "cuda", "opencl"], global::Engine.Backends.Registry.ProviderNames);
        Assert.Equal("cpu", Devices.List()[0].Spec);
    }

    [Fact]
    public void Specs_are_parsed_by_provider_name()
    {
        var registry = new AcceleratorRegistry([
            new FakeProvider("beta", 20, [("slow card", 1L << 30), ("big card", 8L << 30)], aliases: ["b"]),
            new FakeProvider("alpha", 10, [("fast card", 8L << 30)]),
            new FakeProvider("host", 0, [("the host", 64L << 30)], hostCpu: true),
        ]);

        Assert.Equal(["host", "alpha", "beta"], registry.ProviderNames);
        Assert.Equal(["host:0", "alpha:0", "beta:0", "beta:1"], registry.ListDevices().Select(d => d.Spec));
        if (Environment.GetEnvironmentVariable(AcceleratorRegistry.EnvironmentVariable) is null or "")
        {
            Assert.Equal("host:0", registry.Resolve(null).Spec); // no spec and no ENGINE_DEVICE: the default provider
        }

        Assert.Equal("beta:1", registry.Resolve("beta:1").Spec);
        Assert.Equal("beta:1", registry.Resolve("B:big").Spec);
        Assert.Equal("beta:0", registry.Resolve("beta").Spec);
        Assert.Equal("alpha:0", registry.Resolve("auto").Spec); // the largest non-host device; ties go to the lower precedence

        var unknown = Assert.Throws<EngineException>(() => registry.Resolve("cuda:0"));
        Assert.Equal("unknown device 'cuda:0': expected host[:N|:name], alpha[:N|:name], beta[:N|:name] or auto", unknown.Message);
        var missing = Assert.Throws<EngineException>(() => registry.Resolve("beta:7"));
        Assert.Equal("device 'beta:7' does not exist: beta has devices 0, 1", missing.Message);
        var empty = new AcceleratorRegistry([new FakeProvider("host", 0, [("the host", 1)], hostCpu: true), new FakeProvider("gone", 5, [])]);
        Assert.Equal("no gone devices found for device spec 'gone' (fake: nothing here)", Assert.Throws<EngineException>(() => empty.Resolve("gone")).Message);
        Assert.Equal("host:0", empty.Resolve("auto").Spec); // no device but the host's: auto falls back to the default
    }

    [Fact]
    public void Two_providers_may_not_share_a_name()
    {
        Assert.Throws<ArgumentException>(() => new AcceleratorRegistry([new FakeProvider("a", 0, []), new FakeProvider("b", 1, [], aliases: ["a"])]));
        Assert.Throws<ArgumentException>(() => new AcceleratorRegistry([]));
    }

    private sealed class FakeProvider(string name, int precedence, (string Name, long Memory)[] devices, string[]? aliases = null, bool hostCpu = false)
        : IAcceleratorProvider
    {
        public string Name => name;

        public IReadOnlyList<string> Aliases => aliases ?? [];

        public int Precedence => precedence;

        public string? ProbeProblem => devices.Length == 0 ? "fake: nothing here" : null;

        public IReadOnlyList<DeviceInfo> Probe() =>
            [.. devices.Select((d, i) => new DeviceInfo(name, i, d.Name, d.Memory, 1, "fake") { IsHostCpu = hostCpu })];

        public Accelerator Create(DeviceInfo device) => TestDevices.Cpu(1);
    }
}

using BenchmarkDotNet.Attributes;
using Engine.Core;
using Engine.Training;

namespace Engine.Benchmarks;

/// <summary>
/// A full train step (forward, backward, AdamW) for the tiny and small presets on every backend
/// (<see cref="BenchmarkDevices"/>; the step waits for the device). The tokens/s column is B*T
/// over the median. Zero allocated bytes per step is part of the contract (MemoryDiagnoser).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(TokensConfig))]
public class TrainStepBenchmarks
{
    private Accelerator? acc;
    private SyntheticBenchmark? bench;

    /// <summary>Device spec: cpu, opencl:0 ...</summary>
    [ParamsSource(nameof(DeviceSpecs))]
    public string Device { get; set; } = "cpu";

    /// <summary>Devices to run on.</summary>
    public static IEnumerable<string> DeviceSpecs => BenchmarkDevices.Specs;

    /// <summary>Model preset.</summary>
    [ParamsSource(nameof(PresetNames))]
    public string Preset { get; set; } = "tiny";

    /// <summary>Presets to run.</summary>
    public static IEnumerable<string> PresetNames => Presets.Selected;

    [GlobalSetup]
    public void Setup()
    {
        var (b, t) = Presets.TrainShape(Preset);
        acc = BenchmarkDevices.Open(Device);
        bench = new SyntheticBenchmark(acc, Presets.Config(Preset, t), b, t);
        bench.Step();
    }

    /// <summary>One step.</summary>
    [Benchmark]
    public float TrainStep() => bench!.Step();

    [GlobalCleanup]
    public void Cleanup()
    {
        bench?.Dispose();
        acc?.Dispose();
    }
}

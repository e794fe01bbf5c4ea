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
public class TrainStepBenchmarks : DevicePresetBenchmark
{
    private Accelerator? acc;
    private SyntheticBenchmark? bench;

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

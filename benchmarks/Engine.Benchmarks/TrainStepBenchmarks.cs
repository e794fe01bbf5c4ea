using BenchmarkDotNet.Attributes;
using Engine.Kernels.Cpu;
using Engine.Training;

namespace Engine.Benchmarks;

/// <summary>
/// A full train step (forward, backward, AdamW) for the tiny and small presets on the CPU.
/// The tokens/s column is B*T over the median. Zero allocated bytes per step is part of the
/// contract (MemoryDiagnoser).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(TokensConfig))]
public class TrainStepBenchmarks
{
    private CpuAccelerator? acc;
    private SyntheticBenchmark? bench;

    /// <summary>Model preset.</summary>
    [ParamsSource(nameof(PresetNames))]
    public string Preset { get; set; } = "tiny";

    /// <summary>Presets to run.</summary>
    public static IEnumerable<string> PresetNames => Presets.Names;

    [GlobalSetup]
    public void Setup()
    {
        var (b, t) = Presets.TrainShape(Preset);
        acc = new CpuAccelerator();
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

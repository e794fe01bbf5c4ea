using BenchmarkDotNet.Attributes;
using Engine.Generation;
using Engine.Kernels.Cpu;

namespace Engine.Benchmarks;

/// <summary>
/// Decode throughput at batch 16 with 16-token prompts and 64 new tokens (EOS ignored), on random
/// weights of the tiny and small presets. tokens/s counts generated tokens over the whole call
/// (prefill included; `engine bench-generate` reports decode-only tokens/s).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(TokensConfig))]
public class DecodeBenchmarks
{
    /// <summary>Sequences decoded together.</summary>
    public const int Batch = 16;

    /// <summary>Prompt tokens.</summary>
    public const int PromptLength = 16;

    /// <summary>New tokens per sequence.</summary>
    public const int NewTokens = 64;

    /// <summary>Generated tokens per benchmark invocation.</summary>
    public const int TokensPerRun = Batch * NewTokens;

    private CpuAccelerator? acc;
    private DecodeBenchmark? bench;

    /// <summary>Model preset.</summary>
    [ParamsSource(nameof(PresetNames))]
    public string Preset { get; set; } = "tiny";

    /// <summary>Presets to run.</summary>
    public static IEnumerable<string> PresetNames => Presets.Selected;

    [GlobalSetup]
    public void Setup()
    {
        acc = new CpuAccelerator();
        bench = new DecodeBenchmark(acc, Presets.Config(Preset, PromptLength + NewTokens + 1), Batch, PromptLength, NewTokens);
        bench.Run();
    }

    /// <summary>Generates Batch x NewTokens tokens.</summary>
    [Benchmark]
    public long Generate() => bench!.Run().GeneratedTokens;

    [GlobalCleanup]
    public void Cleanup()
    {
        bench?.Dispose();
        acc?.Dispose();
    }
}

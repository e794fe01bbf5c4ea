using BenchmarkDotNet.Attributes;
using Engine.Generation;
using Engine.Kernels.Cpu;

namespace Engine.Benchmarks;

/// <summary>
/// Infinite Sampling's samplers (methods.md §3) on the tiny and small presets: G = 32 samples of one
/// 16-token prompt, up to 256 new tokens, random weights with an end-of-sequence bias so lengths
/// vary (mean ~100 tokens). full decodes the group at the KV it needs; micro, continuous and infinite
/// run at the KV of the prompt and <see cref="BudgetSamples"/> worst-case samples (an eighth of full's: at a quarter,
/// infinite's resident KV peak was 62-77% of full's; at an eighth it is under half). Every sampler generates the same
/// tokens, so the times compare
/// directly (<c>engine bench-sampling</c> prints the decode steps and peak KV of the same setup at
/// 1024 new tokens).
/// </summary>
public class SamplerBenchmarks
{
    /// <summary>Samples of the prompt (G).</summary>
    public const int SamplesPerPrompt = 32;

    /// <summary>Prompt tokens.</summary>
    public const int PromptLength = 16;

    /// <summary>Most new tokens per sample.</summary>
    public const int NewTokens = 256;

    /// <summary>Whole worst-case samples the budget of micro, continuous and infinite holds.</summary>
    public const int BudgetSamples = 4;

    private CpuAccelerator? acc;
    private SamplingBenchmark? bench;

    /// <summary>Model preset.</summary>
    [ParamsSource(nameof(PresetNames))]
    public string Preset { get; set; } = "tiny";

    /// <summary>Presets to run.</summary>
    public static IEnumerable<string> PresetNames => Presets.Selected;

    /// <summary>full, micro, continuous or infinite.</summary>
    [Params("full", "micro", "continuous", "infinite")]
    public string Sampler { get; set; } = "infinite";

    /// <summary>Builds the model and the generator, teaches the online predictor from a warm-up call.</summary>
    [GlobalSetup]
    public void Setup()
    {
        acc = new CpuAccelerator();
        var config = Presets.Config(Preset, PromptLength + NewTokens + 1);
        SamplerKind kind = Engine.Config.OptionsBinder.ParseEnum<SamplerKind>(Sampler, "Sampler");
        long budget = kind == SamplerKind.Full ? 0 : SamplingBenchmark.FullGroupBytes(config, PromptLength, NewTokens, BudgetSamples);
        bench = new SamplingBenchmark(acc, config, kind, SamplesPerPrompt, PromptLength, NewTokens, budget, EosBias(config.VocabSize));
    }

    /// <summary>Generates the G samples; returns the tokens generated.</summary>
    [Benchmark]
    public long Generate() => bench!.Run().Stats.GeneratedTokens;

    /// <summary>Releases the generator and the accelerator.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        bench?.Dispose();
        acc?.Dispose();
    }

    /// <summary>An end-of-sequence logit bias giving near-zero random logits a stop probability of ~1/100 per token.</summary>
    private static float EosBias(int vocab) => (float)Math.Log((vocab - 1) / 99.0);
}

using Engine.Core;
using Engine.Model;
using Engine.Util;

namespace Engine.Generation;

/// <summary>
/// Decode throughput on random weights: B random prompts of P tokens, one response each, N new
/// tokens (EOS ignored), sampled at temperature 1. The body of <c>engine bench-generate</c> and of
/// the decode benchmarks.
/// </summary>
internal sealed class DecodeBenchmark : IDisposable
{
    private readonly int[][] prompts;

    public DecodeBenchmark(Accelerator acc, ModelConfig config, int batch, int promptLength, int newTokens, ulong seed = 1,
        long kvBudgetBytes = 0)
    {
        Model = new Transformer(acc, config);
        ModelInit.Initialize(Model, seed);
        var rng = new SplitMix64(seed + 1);
        prompts = Enumerable.Range(0, batch)
            .Select(_ => Enumerable.Range(0, promptLength).Select(_ => rng.NextInt(config.VocabSize)).ToArray()).ToArray();
        NewTokens = newTokens;
        long perSequence = (long)config.Layers * 2 * config.KvHeads * config.HeadDim * 4 * (promptLength + newTokens + 32);
        Generator = new Generator(Model, new GeneratorOptions
        {
            MaxSlots = batch,
            KvBudgetBytes = kvBudgetBytes > 0 ? kvBudgetBytes : perSequence * batch * 2,
        });
    }

    public Transformer Model { get; }

    public Generator Generator { get; }

    public int NewTokens { get; }

    /// <summary>Runs one generation; returns its stats.</summary>
    public GenerationStats Run(ulong seed = 3)
    {
        Generator.Generate(prompts, 1, new SamplingOptions { MaxNewTokens = NewTokens, Seed = seed, EosTokenIds = [] });
        return Generator.Stats;
    }

    public void Dispose()
    {
        Generator.Dispose();
        Model.Dispose();
    }
}

using Engine.Core;
using Engine.Model;
using Engine.Util;

namespace Engine.Generation;

/// <summary>
/// Decode throughput on random weights: B responses of N new tokens (EOS ignored) sampled at
/// temperature 1, to B / G random prompts of P tokens with G responses each. The G responses of a
/// prompt share its prefilled cache blocks, or (without sharing) each prefills its own copy of the
/// prompt, which is what the peak KV bytes of the two compare. The body of
/// <c>engine bench-generate</c> and of the decode benchmarks.
/// </summary>
internal sealed class DecodeBenchmark : IDisposable
{
    private readonly int[][] prompts;
    private readonly int samplesPerCall;

    public DecodeBenchmark(Accelerator acc, ModelConfig config, int batch, int promptLength, int newTokens, ulong seed = 1,
        long kvBudgetBytes = 0, int samplesPerPrompt = 1, bool sharePrompts = true)
    {
        if (samplesPerPrompt < 1 || batch % samplesPerPrompt != 0)
        {
            throw new EngineException($"the batch ({batch}) must be a positive multiple of the samples per prompt ({samplesPerPrompt})");
        }

        Model = new Transformer(acc, config);
        ModelInit.Initialize(Model, seed);
        var rng = new SplitMix64(seed + 1);
        int[][] distinct = Enumerable.Range(0, batch / samplesPerPrompt)
            .Select(_ => Enumerable.Range(0, promptLength).Select(_ => rng.NextInt(config.VocabSize)).ToArray()).ToArray();
        prompts = sharePrompts ? distinct : distinct.SelectMany(p => Enumerable.Repeat(p, samplesPerPrompt)).ToArray();
        samplesPerCall = sharePrompts ? samplesPerPrompt : 1;
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

    /// <summary>
    /// FNV-1a over the last <see cref="Run"/>'s tokens and the bits of both log-probs of every
    /// response, in request order: equal hashes say a change to the decode kernels kept every bit.
    /// </summary>
    public ulong ResultsHash { get; private set; }

    /// <summary>Runs one generation; returns its stats.</summary>
    public GenerationStats Run(ulong seed = 3)
    {
        var groups = Generator.Generate(prompts, samplesPerCall, new SamplingOptions { MaxNewTokens = NewTokens, Seed = seed, EosTokenIds = [] });
        ulong hash = 14695981039346656037UL;
        foreach (GeneratedSequence s in groups.SelectMany(g => g.Samples))
        {
            for (int i = 0; i < s.TokenIds.Count; i++)
            {
                hash = (hash ^ (uint)s.TokenIds[i]) * 1099511628211UL;
                hash = (hash ^ BitConverter.SingleToUInt32Bits(s.SampleLogProbs[i])) * 1099511628211UL;
                hash = (hash ^ BitConverter.SingleToUInt32Bits(s.PolicyLogProbs[i])) * 1099511628211UL;
            }
        }

        ResultsHash = hash;
        return Generator.Stats;
    }

    public void Dispose()
    {
        Generator.Dispose();
        Model.Dispose();
    }
}

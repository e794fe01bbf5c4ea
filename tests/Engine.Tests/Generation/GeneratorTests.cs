using Engine.Core;
using Engine.Generation;
using Engine.Model;
using Engine.Tests.Support;
using Xunit.Abstractions;

namespace Engine.Tests.Generation;

/// <summary>The generation engine: cached decoding, exact log-probs, reproducibility, sharing, memory.</summary>
public sealed class GeneratorTests(ITestOutputHelper output) : IDisposable
{
    private readonly CpuAcceleratorHolder holder = new();

    public static TheoryData<string> Families => ["gpt2", "llama", "qwen3"];

    internal static ModelConfig TinyConfig(string family) => family switch
    {
        "gpt2" => ModelConfig.Gpt2(vocab: 53, dim: 32, layers: 2, heads: 4, maxPositions: 80),
        "qwen3" => ModelConfig.LlamaFamily(ModelFamily.Qwen3, vocab: 53, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48,
            maxPositions: 80, tied: true) with { EosTokenIds = [0] },
        _ => ModelConfig.LlamaFamily(ModelFamily.Qwen2, vocab: 53, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48,
            maxPositions: 80, tied: false) with { EosTokenIds = [0] },
    };

    internal static Transformer TinyModel(Accelerator acc, string family, ulong seed = 7)
    {
        var model = new Transformer(acc, TinyConfig(family));
        ModelInit.Initialize(model, seed, std: 0.5f);
        return model;
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Cached_decoding_gives_the_logits_of_a_full_forward(string family)
    {
        using Transformer model = TinyModel(holder.Acc, family);
        int[] tokens = TestData.Ints(3, 37, model.Config.VocabSize);
        float[] full = FullForwardLogits(model, tokens);
        float[] cached = PagedLogits(model, tokens, prefill: 20, blockSize: 16);
        double maxDiff = full.Zip(cached, (a, b) => Math.Abs(a - b)).Max();
        output.WriteLine($"{family}: max |cached - full| logit difference over {tokens.Length} positions = {maxDiff:E2}");
        Assert.True(maxDiff <= 1e-5, $"cached decoding differs from the full forward by {maxDiff:E2}");
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Sampler_log_probs_equal_the_training_forward(string family)
    {
        using Transformer model = TinyModel(holder.Acc, family);
        using var gen = new Generator(model, new GeneratorOptions { MaxSlots = 4 });
        int[][] prompts = [[5, 9, 11], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [40]];
        var groups = gen.Generate(prompts, 3, new SamplingOptions { MaxNewTokens = 12, Seed = 11, Temperature = 0.9f, TopP = 0.95f });
        double worst = 0;
        foreach (GenerationGroup group in groups)
        {
            foreach (GeneratedSequence s in group.Samples)
            {
                float[] training = TrainingLogProbs(model, [.. group.PromptTokenIds], [.. s.TokenIds]);
                for (int i = 0; i < training.Length; i++)
                {
                    worst = Math.Max(worst, Math.Abs(training[i] - s.PolicyLogProbs[i]));
                }
            }
        }

        output.WriteLine($"{family}: max |sampler - training| log-prob difference = {worst:E2}");
        Assert.True(worst <= 1e-5, $"sampler log-probs differ from the training forward by {worst:E2}");
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Same_seed_gives_the_same_samples_whatever_the_slots_or_order(string family)
    {
        using Transformer model = TinyModel(holder.Acc, family);
        int[][] prompts = [[5, 9, 11], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], [40], [3, 3]];
        var sampling = new SamplingOptions { MaxNewTokens = 10, Seed = 99, TopK = 20 };
        string reference = Signature(Run(model, prompts, 4, sampling, new GeneratorOptions { MaxSlots = 16 }, out GenerationStats together));
        Assert.Equal(reference, Signature(Run(model, prompts, 4, sampling, new GeneratorOptions { MaxSlots = 1 }, out GenerationStats oneByOne)));

        // 16 slots admit every response at once, so the three prompts with a prefix are prefilled in one forward.
        Assert.Equal((1, 3), (together.PrefillForwards, oneByOne.PrefillForwards));
        Assert.Equal(reference, Signature(Run(model, prompts, 4, sampling, new GeneratorOptions { MaxSlots = 3 })));
        Assert.Equal(reference, Signature(Run(model, prompts, 4, sampling, new GeneratorOptions { MaxSlots = 5, Policy = new LastFirstPolicy() })));
        Assert.Equal(reference, Signature(Run(model, prompts, 4, sampling, new GeneratorOptions { MaxSlots = 7, BlockSize = 5, MaxPrefillRows = 4 })));

        // A prompt alone gives what it gave inside the batch, when its sequence ids are the same.
        var alone = Run(model, [prompts[1]], 4, sampling, new GeneratorOptions { MaxSlots = 2 }, sequenceIdBase: 4);
        Assert.Equal(Signature(Run(model, prompts, 4, sampling, new GeneratorOptions()).Skip(1).Take(1)), Signature(alone));
        Assert.NotEqual(reference, Signature(Run(model, prompts, 4, sampling with { Seed = 100 }, new GeneratorOptions())));
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Samples_sharing_a_prompt_equal_independently_prefilled_samples(string family)
    {
        using Transformer model = TinyModel(holder.Acc, family);
        int[] prompt = TestData.Ints(5, 21, model.Config.VocabSize);
        const int g = 6;
        var sampling = new SamplingOptions { MaxNewTokens = 9, Seed = 5 };
        var shared = Run(model, [prompt], g, sampling, new GeneratorOptions { MaxSlots = 4, BlockSize = 8 }, out GenerationStats sharedStats);
        var separate = Run(model, Enumerable.Repeat(prompt, g).ToArray(), 1, sampling, new GeneratorOptions { MaxSlots = 4, BlockSize = 8 },
            out GenerationStats separateStats);
        Assert.Equal(Signature(shared), Signature([new GenerationGroup(0, prompt, separate.Select(s => s.Samples[0]).ToArray())]));
        Assert.True(sharedStats.PrefillTokens == prompt.Length - 1 && separateStats.PrefillTokens == g * (prompt.Length - 1),
            $"prefill tokens: shared {sharedStats.PrefillTokens}, separate {separateStats.PrefillTokens}");
        Assert.True(sharedStats.CopiesOnWrite > 0, "the partly filled last prompt block must be copied on write");
    }

    [Fact]
    public void Sixteen_samples_sharing_a_prompt_hold_less_cache_than_sixteen_copies()
    {
        ModelConfig cfg = TinyConfig("gpt2");
        GenerationStats Peak(bool share)
        {
            using var bench = new DecodeBenchmark(holder.Acc, cfg, batch: 16, promptLength: 40, newTokens: 8, samplesPerPrompt: 16, sharePrompts: share);
            return bench.Run();
        }

        GenerationStats shared = Peak(share: true), separate = Peak(share: false);
        output.WriteLine($"G = 16, 40-token prompt, 8 new tokens: peak KV {shared.PeakKvBytes} bytes shared, {separate.PeakKvBytes} bytes without sharing");
        Assert.Equal(39, shared.PrefillTokens);
        Assert.Equal(16 * 39, separate.PrefillTokens);
        Assert.True(shared.PeakKvBytes * 2 < separate.PeakKvBytes, $"sharing must at least halve the peak here: {shared.PeakKvBytes} vs {separate.PeakKvBytes}");
    }

    [Fact]
    public void Every_block_returns_to_the_free_list_and_the_budget_holds()
    {
        using Transformer model = TinyModel(holder.Acc, "llama");
        ModelConfig cfg = model.Config;
        long blockBytes = (long)cfg.Layers * 2 * cfg.KvHeads * 8 * cfg.HeadDim * 4;
        long budget = 12 * blockBytes;
        using var gen = new Generator(model, new GeneratorOptions { MaxSlots = 8, BlockSize = 8, KvBudgetBytes = budget });
        int[][] prompts = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [4, 5], [6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]];
        var groups = gen.Generate(prompts, 5, new SamplingOptions { MaxNewTokens = 14, Seed = 1, EosTokenIds = [] });
        Assert.All(groups, g => Assert.All(g.Samples, s => Assert.Equal(14, s.TokenIds.Count)));
        Assert.Equal(gen.Cache.TotalBlocks, gen.Cache.FreeBlocks);
        Assert.True(gen.Stats.PeakKvBytes <= budget, $"peak {gen.Stats.PeakKvBytes} exceeds the budget {budget}");
        Assert.True(gen.Stats.MaxConcurrent < 8, "the budget, not the slots, must have limited concurrency here");
        output.WriteLine($"peak KV {gen.Stats.PeakKvBytes} of {budget} bytes, max concurrent {gen.Stats.MaxConcurrent}");
    }

    [Fact]
    public void Responses_stop_on_eos_on_stop_sequences_and_at_max_tokens()
    {
        using Transformer model = TinyModel(holder.Acc, "gpt2");
        int[][] prompts = [[1, 2, 3]];
        var free = Run(model, prompts, 8, new SamplingOptions { MaxNewTokens = 30, Seed = 3, EosTokenIds = [] }, new GeneratorOptions());
        Assert.All(free[0].Samples, s => Assert.Equal(FinishReason.Length, s.FinishReason));
        int eos = free[0].Samples[0].TokenIds[4];
        var stopped = Run(model, prompts, 8, new SamplingOptions { MaxNewTokens = 30, Seed = 3, EosTokenIds = [eos] }, new GeneratorOptions());
        GeneratedSequence first = stopped[0].Samples[0];
        Assert.Equal(FinishReason.EndOfSequence, first.FinishReason);
        Assert.Equal(free[0].Samples[0].TokenIds.Take(first.TokenIds.Count), first.TokenIds);
        Assert.Equal(eos, first.TokenIds[^1]);
        Assert.True(first.TokenIds.Count <= 5);

        int[] stop = [.. free[0].Samples[1].TokenIds.Skip(2).Take(2)];
        var bySequence = Run(model, prompts, 8, new SamplingOptions { MaxNewTokens = 30, Seed = 3, EosTokenIds = [], StopSequences = [stop] },
            new GeneratorOptions());
        GeneratedSequence second = bySequence[0].Samples[1];
        Assert.Equal(FinishReason.StopSequence, second.FinishReason);
        Assert.Equal(stop, second.TokenIds.TakeLast(2));
        Assert.True(second.TokenIds.Count <= 4);
    }

    [Fact]
    public void Greedy_decoding_picks_the_argmax_with_zero_sampling_log_prob()
    {
        using Transformer model = TinyModel(holder.Acc, "llama");
        int[] prompt = [7, 8, 9];
        var groups = Run(model, [prompt], 2, new SamplingOptions { MaxNewTokens = 6, Temperature = 0, EosTokenIds = [] }, new GeneratorOptions());
        Assert.Equal(groups[0].Samples[0].TokenIds, groups[0].Samples[1].TokenIds);
        Assert.All(groups[0].Samples[0].SampleLogProbs, lp => Assert.Equal(0f, lp));
        int[] sequence = [.. prompt, .. groups[0].Samples[0].TokenIds];
        float[] logits = FullForwardLogits(model, sequence);
        int v = model.Config.VocabSize;
        for (int i = 0; i < 6; i++)
        {
            var row = logits.AsSpan((prompt.Length - 1 + i) * v, v);
            Assert.Equal(row.IndexOf(TensorMax(row)), groups[0].Samples[0].TokenIds[i]);
        }
    }

    [Fact]
    public void Bad_requests_get_clear_errors()
    {
        using Transformer model = TinyModel(holder.Acc, "gpt2");
        using var gen = new Generator(model, new GeneratorOptions());
        var ok = new SamplingOptions();
        Assert.Contains("prompt 0 is empty", Assert.Throws<EngineException>(() => gen.Generate([[]], 1, ok)).Message, StringComparison.Ordinal);
        Assert.Contains("context", Assert.Throws<EngineException>(() => gen.Generate([new int[80]], 1, ok)).Message, StringComparison.Ordinal);
        Assert.Contains("at least 1", Assert.Throws<EngineException>(() => gen.Generate([[1]], 0, ok)).Message, StringComparison.Ordinal);
        Assert.Contains("top-p", Assert.Throws<EngineException>(() => gen.Generate([[1]], 1, ok with { TopP = 0 })).Message, StringComparison.Ordinal);
        Assert.Contains("top-p", Assert.Throws<EngineException>(() => gen.Generate([[1]], 1, ok with { TopP = 1.5f })).Message, StringComparison.Ordinal);
        Assert.Contains("vocabulary", Assert.Throws<EngineException>(() => gen.Generate([[1, 53]], 1, ok)).Message, StringComparison.Ordinal);
        Assert.Contains("temperature", Assert.Throws<EngineException>(() => gen.Generate([[1]], 1, ok with { Temperature = -1 })).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(SamplerKind.Continuous)]
    [InlineData(SamplerKind.Infinite)]
    public void Tokens_are_reported_as_sampled_and_a_cancelled_call_frees_its_memory(SamplerKind sampler)
    {
        using Transformer model = TinyModel(holder.Acc, "qwen3");
        using var gen = new Generator(model, new GeneratorOptions { MaxSlots = 3, BlockSize = 4, KvBudgetBytes = 1L << 20, Sampler = sampler });
        int[][] prompts = [[5, 9, 11, 12, 13], [40, 41]];
        var sampling = new SamplingOptions { MaxNewTokens = 20, Seed = 3, Temperature = 1f };
        var reported = new List<int>[2, 4];
        for (int p = 0; p < 2; p++)
        {
            for (int j = 0; j < 4; j++)
            {
                reported[p, j] = [];
            }
        }

        var groups = gen.Generate(prompts, 4, sampling, onToken: (p, j, token) => reported[p, j].Add(token));
        foreach (GenerationGroup group in groups)
        {
            foreach (GeneratedSequence s in group.Samples)
            {
                Assert.Equal(s.TokenIds, reported[s.PromptIndex, s.SampleIndex]);
            }
        }

        using var cancel = new CancellationTokenSource();
        int seen = 0;
        Assert.ThrowsAny<OperationCanceledException>(() => gen.Generate(prompts, 4, sampling, onToken: (_, _, _) =>
        {
            if (++seen == 7)
            {
                cancel.Cancel();
            }
        }, cancellationToken: cancel.Token));
        Assert.Equal(gen.Cache.TotalBlocks, gen.Cache.FreeBlocks);

        var again = gen.Generate(prompts, 4, sampling);
        Assert.Equal(groups.SelectMany(g => g.Samples).Select(s => s.TokenIds), again.SelectMany(g => g.Samples).Select(s => s.TokenIds));
    }

    public void Dispose() => holder.Dispose();

    internal static float[] FullForwardLogits(Transformer model, int[] tokens)
    {
        model.SetTokens(tokens, 1, tokens.Length);
        model.Forward();
        using DeviceBuffer logits = model.Acc.Allocate((long)tokens.Length * model.Config.VocabSize);
        model.Logits(logits.All);
        return model.Acc.ToArray(logits.All);
    }

    /// <summary>Log-probs of <paramref name="response"/> given <paramref name="prompt"/> from the training forward pass.</summary>
    internal static float[] TrainingLogProbs(Transformer model, int[] prompt, int[] response)
    {
        int[] tokens = [.. prompt, .. response];
        model.SetTokens(tokens, 1, tokens.Length);
        var targets = Enumerable.Repeat(-1, tokens.Length).ToArray();
        for (int i = 0; i < response.Length; i++)
        {
            targets[prompt.Length - 1 + i] = response[i];
        }

        model.SetTargets(targets);
        model.Forward();
        model.HeadForward(entropy: false);
        float[] logp = model.Acc.ToArray(model.Plan.LogProbs);
        return logp.Skip(prompt.Length - 1).Take(response.Length).ToArray();
    }

    /// <summary>Logits of every position computed through the paged cache: a prefill chunk, then one token per step.</summary>
    private static float[] PagedLogits(Transformer model, int[] tokens, int prefill, int blockSize)
    {
        ModelConfig cfg = model.Config;
        Accelerator acc = model.Acc;
        using var cache = new PagedKvCache(acc, cfg, 16, blockSize);
        int maxBlocks = cache.BlocksFor(cfg.MaxPositions);
        using var plan = new InferencePlan(acc, cfg, tokens.Length, tokens.Length, 1, maxBlocks);
        KvSequence seq = PagedKvCache.NewSequence();
        var result = new float[tokens.Length * cfg.VocabSize];
        var table = new int[maxBlocks];
        for (int start = 0; start < tokens.Length;)
        {
            int n = start == 0 ? prefill : 1;
            int[] slots = Enumerable.Range(0, n).Select(_ => cache.AppendSlot(seq)).ToArray();
            seq.Blocks.CopyTo(table);
            acc.Upload(plan.Tokens.Slice(0, n), tokens.AsSpan(start, n));
            acc.Upload(plan.Positions.Slice(0, n), Enumerable.Range(start, n).ToArray());
            acc.Upload(plan.Slots.Slice(0, n), slots);
            acc.Upload(plan.RowSequence.Slice(0, n), new int[n]);
            acc.Upload(plan.BlockTables, table);
            acc.Upload(plan.GatherRows.Slice(0, n), Enumerable.Range(0, n).ToArray());
            acc.Upload(plan.Uniforms.Slice(0, n), new float[n]);
            acc.Upload(plan.Temperatures.Slice(0, n), Enumerable.Repeat(1f, n).ToArray());
            acc.Upload(plan.TopK.Slice(0, n), new int[n]);
            acc.Upload(plan.TopP.Slice(0, n), Enumerable.Repeat(1f, n).ToArray());
            model.ForwardPaged(plan, n, cache.Binding);
            model.SampleGathered(plan, n);
            acc.Download(plan.Logits.Slice(0, (long)n * cfg.VocabSize), result.AsSpan(start * cfg.VocabSize, n * cfg.VocabSize));
            start += n;
        }

        return result;
    }

    private static float TensorMax(ReadOnlySpan<float> row)
    {
        float max = float.NegativeInfinity;
        foreach (float x in row)
        {
            max = Math.Max(max, x);
        }

        return max;
    }

    private static IReadOnlyList<GenerationGroup> Run(Transformer model, int[][] prompts, int g, SamplingOptions sampling, GeneratorOptions options,
        long sequenceIdBase = 0) => Run(model, prompts, g, sampling, options, out _, sequenceIdBase);

    private static IReadOnlyList<GenerationGroup> Run(Transformer model, int[][] prompts, int g, SamplingOptions sampling, GeneratorOptions options,
        out GenerationStats stats, long sequenceIdBase = 0)
    {
        using var gen = new Generator(model, options);
        var groups = gen.Generate(prompts, g, sampling, sequenceIdBase);
        stats = gen.Stats;
        Assert.Equal(gen.Cache.TotalBlocks, gen.Cache.FreeBlocks);
        return groups;
    }

    /// <summary>Every token, finish reason and log-prob bit of the groups, for exact comparisons.</summary>
    internal static string Signature(IEnumerable<GenerationGroup> groups) =>
        string.Join(" | ", groups.Select(g => string.Join(" / ", g.Samples.Select(s =>
            $"{string.Join(",", s.TokenIds)}:{s.FinishReason}:{string.Join(",", s.SampleLogProbs.Select(x => BitConverter.SingleToInt32Bits(x)))}:" +
            string.Join(",", s.PolicyLogProbs.Select(x => BitConverter.SingleToInt32Bits(x)))))));

    /// <summary>Admits the most recently queued response first: a different order, the same results.</summary>
    private sealed class LastFirstPolicy : ISchedulingPolicy
    {
        public int Choose(IReadOnlyList<PendingSample> pending) => pending.Count - 1;
    }
}

/// <summary>One CPU accelerator per test class instance.</summary>
internal sealed class CpuAcceleratorHolder : IDisposable
{
    public Accelerator Acc { get; } = TestDevices.Cpu();

    public void Dispose() => Acc.Dispose();
}

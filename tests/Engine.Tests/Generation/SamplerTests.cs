using Engine.Core;
using Engine.Generation;
using Engine.Model;
using Engine.Tests.Support;
using Engine.Util;
using Xunit.Abstractions;

namespace Engine.Tests.Generation;

/// <summary>
/// The samplers of Infinite Sampling (methods.md §3): lossless against full-group decoding, within
/// the slots and the KV budget, the prompt prefilled once, and the length-aware plan's order and
/// makespan.
/// </summary>
public sealed class SamplerTests(ITestOutputHelper output) : IDisposable
{
    private const int BlockSize = 8;
    private readonly CpuAcceleratorHolder holder = new();

    // The llama tiny model ends responses with token 0 (vocabulary 53): lengths vary from 1 to the cap.
    private static readonly SamplingOptions Sampling = new() { MaxNewTokens = 40, Seed = 21, Temperature = 1f };

    public static TheoryData<SamplerKind> SamplerKinds => [.. Enum.GetValues<SamplerKind>()];

    [Fact]
    public void Every_sampler_gives_the_completions_and_log_probs_of_full_group_decoding()
    {
        using Transformer model = GeneratorTests.TinyModel(holder.Acc, "llama");
        int[][] prompts = [TestData.Ints(3, 10, 53), TestData.Ints(4, 19, 53)];
        const int g = 12;
        string full = GeneratorTests.Signature(Run(model, prompts, g, SamplerKind.Full, BlocksBytes(model, 400), out GenerationStats fullStats));
        int lengths = 0;
        foreach (SamplerKind kind in new[] { SamplerKind.Micro, SamplerKind.Continuous, SamplerKind.Infinite })
        {
            var groups = Run(model, prompts, g, kind, BlocksBytes(model, 28), out GenerationStats stats);
            Assert.Equal(full, GeneratorTests.Signature(groups));
            Assert.True(stats.DecodeSteps > fullStats.DecodeSteps, $"{kind}: 28 blocks must hold fewer samples than G, so more steps than full ({stats.DecodeSteps})");
            lengths = groups.SelectMany(x => x.Samples).Select(s => s.TokenIds.Count).Distinct().Count();
        }

        // With the oracle and with a predictor that has learnt from earlier calls.
        var oracle = new OracleLengthPredictor(LengthsOf(Run(model, prompts, g, SamplerKind.Continuous, BlocksBytes(model, 400), out _)), prefixTokens: 4);
        Assert.Equal(full, GeneratorTests.Signature(Run(model, prompts, g, SamplerKind.Infinite, BlocksBytes(model, 28), out _, oracle)));
        Assert.True(lengths >= 5, $"the test needs varied lengths, got {lengths} distinct");
    }

    [Theory]
    [MemberData(nameof(SamplerKinds))]
    public void Live_samples_stay_within_the_slots_and_the_budget_and_the_prompt_is_prefilled_once(SamplerKind kind)
    {
        using Transformer model = GeneratorTests.TinyModel(holder.Acc, "llama");
        int[][] prompts = [TestData.Ints(5, 10, 53), TestData.Ints(6, 3, 53)];
        const int g = 8, slots = 8;
        long budget = kind == SamplerKind.Full ? BlocksBytes(model, 60) : BlocksBytes(model, 22);
        using var gen = new Generator(model, new GeneratorOptions { MaxSlots = slots, BlockSize = BlockSize, KvBudgetBytes = budget, Sampler = kind });
        var groups = gen.Generate(prompts, g, Sampling);
        GenerationStats stats = gen.Stats;
        long total = groups.SelectMany(x => x.Samples).Sum(s => (long)s.TokenIds.Count);
        output.WriteLine($"{kind}: {stats.DecodeSteps} steps, {total} tokens, max {stats.MaxConcurrent} live, peak KV {stats.PeakKvBytes} (committed {stats.PeakKvCommittedBytes}) of {budget}");
        Assert.True(stats.MaxConcurrent <= slots, $"{stats.MaxConcurrent} live samples in {slots} slots");
        Assert.True(stats.PeakKvBytes <= stats.PeakKvCommittedBytes && stats.PeakKvCommittedBytes <= budget,
            $"peak {stats.PeakKvBytes}, committed {stats.PeakKvCommittedBytes}, budget {budget}");
        Assert.Equal(total, stats.GeneratedTokens);
        Assert.True(stats.DecodeSteps >= (total + slots - 1) / slots, $"{stats.DecodeSteps} steps for {total} tokens in {slots} slots");

        // Each prompt's first P-1 tokens are prefilled once, whatever the number of units.
        Assert.Equal(prompts.Sum(p => p.Length - 1), stats.PrefillTokens);
        Assert.Equal(gen.Cache.TotalBlocks, gen.Cache.FreeBlocks);
    }

    [Fact]
    public void Micro_groups_decode_unit_after_unit_and_continuous_refill_takes_fewer_steps()
    {
        using Transformer model = GeneratorTests.TinyModel(holder.Acc, "llama");
        int[][] prompt = [TestData.Ints(7, 10, 53)];
        const int g = 12;
        long budget = BlocksBytes(model, 2 + 3 * 6); // the prompt's 2 blocks and three worst-case samples of 6
        var groups = Run(model, prompt, g, SamplerKind.Micro, budget, out GenerationStats micro);
        Run(model, prompt, g, SamplerKind.Continuous, budget, out GenerationStats continuous);
        int[] lengths = groups[0].Samples.Select(s => s.TokenIds.Count).ToArray();

        // Units of 3, in sample order, each as long as its longest sample.
        int expected = Enumerable.Range(0, g / 3).Sum(u => lengths.Skip(3 * u).Take(3).Max());
        Assert.Equal(3, micro.MaxConcurrent);
        Assert.Equal(expected, micro.DecodeSteps);
        Assert.True(continuous.DecodeSteps <= micro.DecodeSteps, $"continuous {continuous.DecodeSteps} vs micro {micro.DecodeSteps} steps");
        output.WriteLine($"lengths {string.Join(",", lengths)}: micro {micro.DecodeSteps} steps, continuous {continuous.DecodeSteps}");
    }

    [Fact]
    public void Length_aware_refill_runs_each_lane_shortest_predicted_first_and_predicts_exactly_with_the_oracle()
    {
        using Transformer model = GeneratorTests.TinyModel(holder.Acc, "llama");
        int[][] prompts = [TestData.Ints(8, 10, 53)];
        const int g = 16;
        var reference = Run(model, prompts, g, SamplerKind.Continuous, BlocksBytes(model, 400), out _);
        var oracle = new OracleLengthPredictor(LengthsOf(reference), prefixTokens: 3);
        var groups = Run(model, prompts, g, SamplerKind.Infinite, BlocksBytes(model, 40), out GenerationStats stats, oracle);
        Assert.Equal(GeneratorTests.Signature(reference), GeneratorTests.Signature(groups));
        Assert.True(stats.Admissions.Count >= 8, $"most samples outlive the probe: {stats.Admissions.Count} resumed");
        Assert.True(stats.Lanes is > 1 and < g, $"lanes {stats.Lanes}");
        foreach (var lane in stats.Admissions.Where(a => !a.Stolen).GroupBy(a => (a.Epoch, a.Lane)))
        {
            double[] order = lane.Select(a => a.Predicted).ToArray();
            Assert.True(order.Zip(order.Skip(1)).All(p => p.First <= p.Second), $"lane {lane.Key}: refill order {string.Join(",", order)}");
        }

        Assert.Equal(stats.Admissions.Count, stats.LengthPredictions.Count);
        Assert.All(stats.LengthPredictions, p => Assert.Equal(p.Actual, p.Predicted));
        Assert.Equal(1.0, stats.LengthCorrelation, 12);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void Recomputing_a_waiting_probe_gives_the_same_completions_and_leaves_its_memory_to_the_lanes(string family)
    {
        // gpt2 has one query head per kv head: a decode row takes attention's lone-query path, the
        // recomputed rows of a resumed probe the column path; llama (two per kv head) the column path for both.
        using Transformer model = GeneratorTests.TinyModel(holder.Acc, family);
        int[][] prompt = [TestData.Ints(9, 10, 53)];
        const int g = 12;
        SamplingOptions sampling = Sampling with { EosTokenIds = [0] };
        string full = GeneratorTests.Signature(Run(model, prompt, g, SamplerKind.Full, BlocksBytes(model, 400), out _, sampling: sampling));

        // The prompt's 2 blocks and three worst-case samples of 6; a probe of k = 4 tokens takes 1 block.
        long budget = BlocksBytes(model, 2 + 3 * 6);
        var recomputed = Run(model, prompt, g, SamplerKind.Infinite, budget, out GenerationStats freed, sampling: sampling);
        var kept = Run(model, prompt, g, SamplerKind.Infinite, budget, out GenerationStats held, sampling: sampling, recomputeProbes: false);
        output.WriteLine($"{family}: freed {freed.Lanes} lanes, {freed.DecodeSteps} steps, {freed.RecomputedTokens} recomputed; kept {held.Lanes} lanes, {held.DecodeSteps} steps");
        Assert.Equal(full, GeneratorTests.Signature(recomputed));
        Assert.Equal(full, GeneratorTests.Signature(kept));
        int resumed = freed.Admissions.Count;
        Assert.True(resumed >= 6, $"most samples outlive the probe: {resumed} resumed");
        Assert.Equal(4L * resumed, freed.RecomputedTokens);
        Assert.Equal(0, held.RecomputedTokens);
        // Kept, the waiting probes' blocks hold back a lane until the first resumed samples end.
        Assert.True(freed.DecodeSteps < held.DecodeSteps, $"freed probes leave the lanes more memory: {freed.DecodeSteps} vs {held.DecodeSteps} steps");
    }

    [Fact]
    public void Lpt_makespan_is_within_its_bound_of_the_brute_forced_optimum()
    {
        var rng = new SplitMix64(5);
        double worst = 0;
        for (int trial = 0; trial < 200; trial++)
        {
            int machines = 2 + trial % 3, n = 3 + trial % 6;
            double[] sizes = Enumerable.Range(0, n).Select(_ => (double)(1 + rng.NextInt(trial % 2 == 0 ? 10 : 1000))).ToArray();
            int[] lpt = MakespanPartition.Lpt(sizes, machines);
            double ratio = MakespanPartition.Makespan(sizes, lpt, machines) / OptimalMakespan(sizes, machines);
            worst = Math.Max(worst, ratio);
            Assert.True(ratio <= MakespanPartition.LptBound(machines) + 1e-12, $"trial {trial}: LPT/OPT = {ratio} on {machines} machines, sizes {string.Join(",", sizes)}");
        }

        // Graham's tight case: 2m+1 jobs 2m-1, 2m-1, 2m-2, 2m-2, ..., m+1, m+1, m, m, m reach the bound.
        int m3 = 3;
        double[] tight = [5, 5, 4, 4, 3, 3, 3];
        double tightRatio = MakespanPartition.Makespan(tight, MakespanPartition.Lpt(tight, m3), m3) / OptimalMakespan(tight, m3);
        Assert.Equal(MakespanPartition.LptBound(m3), tightRatio, 12);
        output.WriteLine($"worst LPT/OPT over 200 random cases: {worst:F4}; Graham's case: {tightRatio:F4}");
    }

    [Fact]
    public void The_online_probe_recovers_a_linear_length_rule()
    {
        var rng = new SplitMix64(9);
        var probe = new OnlineLengthPredictor(prefixTokens: 1, ridge: 1e-6);
        float[] w = [3f, -2f, 0.5f, 1f];
        LengthEvidence Next()
        {
            float[] h = Enumerable.Range(0, w.Length).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            return new LengthEvidence(0, 1, [1], [0f], h);
        }

        int Rule(LengthEvidence e) => (int)Math.Round(50 + 10 * e.Hidden.Select((x, i) => x * w[i]).Sum());
        for (int i = 0; i < 40; i++)
        {
            LengthEvidence e = Next();
            probe.Learn(e, Rule(e));
        }

        var test = Enumerable.Range(0, 20).Select(_ => Next()).ToArray();
        double corr = Statistics.Pearson(test.Select(probe.Predict).ToArray(), test.Select(e => (double)Rule(e)).ToArray());
        Assert.True(corr > 0.99, $"correlation {corr}");
    }

    [Theory]
    [MemberData(nameof(SamplerKinds))]
    public void A_budget_too_small_for_one_sample_and_its_prompt_is_an_error(SamplerKind kind)
    {
        using Transformer model = GeneratorTests.TinyModel(holder.Acc, "llama");
        // The prompt needs 2 blocks, one sample 6: 7 blocks hold neither the prompt plus a sample nor (for full) G of them.
        var ex = Assert.Throws<EngineException>(() => Run(model, [TestData.Ints(3, 10, 53)], 4, kind, BlocksBytes(model, 7), out _));
        output.WriteLine(ex.Message);
        Assert.Contains("budget", ex.Message);
        Assert.Throws<EngineException>(() => Engine.Config.OptionsBinder.ParseEnum<SamplerKind>("fastest", "sampler"));
    }

    public void Dispose() => holder.Dispose();

    private static long BlocksBytes(Transformer model, int blocks)
    {
        ModelConfig c = model.Config;
        return (long)blocks * c.Layers * 2 * c.KvHeads * BlockSize * c.HeadDim * sizeof(float);
    }

    private static IReadOnlyList<GenerationGroup> Run(Transformer model, int[][] prompts, int g, SamplerKind kind, long budget, out GenerationStats stats,
        ILengthPredictor? predictor = null, SamplingOptions? sampling = null, bool recomputeProbes = true)
    {
        using var gen = new Generator(model, new GeneratorOptions
        {
            MaxSlots = 16, BlockSize = BlockSize, KvBudgetBytes = budget, Sampler = kind, LengthPredictor = predictor ?? new OnlineLengthPredictor(prefixTokens: 4),
            RecomputeProbes = recomputeProbes,
        });
        var groups = gen.Generate(prompts, g, sampling ?? Sampling);
        stats = gen.Stats;
        Assert.Equal(gen.Cache.TotalBlocks, gen.Cache.FreeBlocks);
        return groups;
    }

    private static Dictionary<long, int> LengthsOf(IEnumerable<GenerationGroup> groups) =>
        groups.SelectMany(x => x.Samples).ToDictionary(s => s.SequenceId, s => s.TokenIds.Count);

    /// <summary>The smallest makespan over every assignment of jobs to machines.</summary>
    private static double OptimalMakespan(double[] sizes, int machines)
    {
        double best = double.PositiveInfinity;
        var load = new double[machines];
        void Place(int j)
        {
            if (j == sizes.Length)
            {
                best = Math.Min(best, load.Max());
                return;
            }

            for (int m = 0; m < machines; m++)
            {
                load[m] += sizes[j];
                if (load[m] < best)
                {
                    Place(j + 1);
                }

                load[m] -= sizes[j];
            }
        }

        Place(0);
        return best;
    }
}

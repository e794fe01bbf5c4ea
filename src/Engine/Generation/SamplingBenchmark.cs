using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Engine.Core;
using Engine.Model;
using Engine.Util;

namespace Engine.Generation;

/// <summary>One timed generation of <see cref="SamplingBenchmark"/>.</summary>
/// <param name="Stats">The generator's counters.</param>
/// <param name="WallMs">The whole call: prefill, decode and scheduling.</param>
/// <param name="Lengths">Generated tokens of each sample, in sample order.</param>
/// <param name="CompletionsSha256">SHA-256 of every sample's tokens and log-prob bits, in sample order (equal for every sampler).</param>
internal sealed record SamplingRun(GenerationStats Stats, double WallMs, int[] Lengths, string CompletionsSha256)
{
    /// <summary>Generated tokens per second of wall time.</summary>
    public double TokensPerSecond => Stats.GeneratedTokens / (WallMs / 1000);

    /// <summary>
    /// The run as one JSON line (the output of <c>engine bench-sampling</c>); with <paramref name="repeats"/> (this run
    /// is their median by wall time) their count and wall-time range too.
    /// </summary>
    public string ToJson(string sampler, long budgetBytes, IReadOnlyList<SamplingRun>? repeats = null)
    {
        int[] sorted = [.. Lengths.Order()];
        double corr = Stats.LengthCorrelation;
        string range = repeats is { Count: > 1 }
            ? string.Create(CultureInfo.InvariantCulture, $"\"repeats\": {repeats.Count}, \"wall_ms_min\": {repeats.Min(r => r.WallMs):F1}, \"wall_ms_max\": {repeats.Max(r => r.WallMs):F1}, ")
            : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"{{\"sampler\": \"{sampler}\", \"kv_budget_bytes\": {budgetBytes}, \"peak_kv_bytes\": {Stats.PeakKvBytes}, \"peak_kv_committed_bytes\": {Stats.PeakKvCommittedBytes}, " +
            $"\"decode_steps\": {Stats.DecodeSteps}, \"generated_tokens\": {Stats.GeneratedTokens}, \"tokens_per_s\": {TokensPerSecond:F1}, \"wall_ms\": {WallMs:F1}, {range}" +
            $"\"recomputed_tokens\": {Stats.RecomputedTokens}, \"max_live\": {Stats.MaxConcurrent}, \"lanes\": {Stats.Lanes}, \"length_min\": {sorted[0]}, \"length_median\": {sorted[sorted.Length / 2]}, " +
            $"\"length_max\": {sorted[^1]}, \"length_prediction_correlation\": {(double.IsNaN(corr) ? "null" : corr.ToString("F3", CultureInfo.InvariantCulture))}, " +
            $"\"predicted_samples\": {Stats.LengthPredictions.Count}, \"completions_sha256\": \"{CompletionsSha256}\"}}");
    }
}

/// <summary>
/// Infinite Sampling's benchmark (methods.md §3): G samples of one random prompt on random weights,
/// up to N new tokens each, with a bias on the end-of-sequence logit (token 0) so lengths vary as
/// a policy's do, under a KV budget, with one sampler. A warm-up call (another seed) teaches the
/// online length predictor (infinite sampler), which is then frozen so every timed call predicts
/// alike from that call alone; the oracle
/// predictor takes the true lengths from a continuous-sampler run of the timed seed. The body of
/// <c>engine bench-sampling</c> and of the sampler benchmarks.
/// </summary>
internal sealed class SamplingBenchmark : IDisposable
{
    /// <summary>The end-of-sequence token of the benchmark.</summary>
    public const int EosToken = 0;

    private readonly int[][] prompt;
    private readonly int samples;
    private readonly SamplingOptions sampling;
    private readonly OnlineLengthPredictor? online;

    public SamplingBenchmark(Accelerator acc, ModelConfig config, SamplerKind sampler, int samplesPerPrompt, int promptLength, int newTokens,
        long kvBudgetBytes, float eosBias, bool oracle = false, int prefixTokens = 16, ulong seed = 1, ulong timedSeed = 2,
        bool recomputeProbes = true)
    {
        if (samplesPerPrompt < 1 || promptLength < 1 || newTokens < 1 || prefixTokens < 1)
        {
            throw new EngineException("--samples-per-prompt, --prompt-len, --new-tokens and --prefix-tokens must be positive");
        }

        Model = new Transformer(acc, config);
        try
        {
            ModelInit.Initialize(Model, seed);
            var rng = new SplitMix64(seed + 1);
            prompt = [Enumerable.Range(0, promptLength).Select(_ => 1 + rng.NextInt(config.VocabSize - 1)).ToArray()];
            samples = samplesPerPrompt;
            sampling = new SamplingOptions { MaxNewTokens = newTokens, Seed = timedSeed, EosTokenIds = [EosToken] };
            BudgetBytes = kvBudgetBytes > 0 ? kvBudgetBytes : FullGroupBytes(config, promptLength, newTokens, samplesPerPrompt);
            var options = new GeneratorOptions
            {
                MaxSlots = samplesPerPrompt, KvBudgetBytes = BudgetBytes, Sampler = sampler, LogitBias = (EosToken, eosBias),
                RecomputeProbes = recomputeProbes,
            };
            ILengthPredictor predictor;
            if (oracle)
            {
                using var reference = new Generator(Model, options with { Sampler = SamplerKind.Continuous });
                var lengths = reference.Generate(prompt, samples, sampling)[0].Samples.ToDictionary(s => s.SequenceId, s => s.TokenIds.Count);
                predictor = new OracleLengthPredictor(lengths, prefixTokens);
            }
            else
            {
                predictor = online = new OnlineLengthPredictor(prefixTokens);
            }

            // Warm-up (another seed): whole for the online predictor to learn from, else short (compiles the code paths).
            Generator = new Generator(Model, options with { LengthPredictor = predictor });
            bool learn = online is not null && sampler == SamplerKind.Infinite;
            Generator.Generate(prompt, samples, sampling with { Seed = seed, MaxNewTokens = learn ? newTokens : Math.Min(newTokens, 32) });
            if (online is not null)
            {
                online.Frozen = true;
            }
        }
        catch
        {
            Generator?.Dispose();
            Model.Dispose();
            throw;
        }
    }

    public Transformer Model { get; }

    public Generator Generator { get; }

    /// <summary>The KV budget the generator runs under.</summary>
    public long BudgetBytes { get; }

    /// <summary>KV bytes full-group decoding of G worst-case samples and their prompt needs (blocks of 16 positions).</summary>
    public static long FullGroupBytes(ModelConfig config, int promptLength, int newTokens, int g, int blockSize = 16)
    {
        long blockBytes = (long)config.Layers * 2 * config.KvHeads * blockSize * config.HeadDim * sizeof(float);
        long Blocks(int positions) => (positions + blockSize - 1) / blockSize;
        long perSample = Blocks(Math.Min(promptLength + newTokens, config.MaxPositions)) - (promptLength - 1) / blockSize;
        return (Blocks(promptLength - 1) + g * perSample) * blockBytes;
    }

    /// <summary>One timed generation of the timed seed.</summary>
    public SamplingRun Run()
    {
        long start = Stopwatch.GetTimestamp();
        var group = Generator.Generate(prompt, samples, sampling)[0];
        double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (GeneratedSequence s in group.Samples)
        {
            hash.AppendData(BitConverter.GetBytes(s.TokenIds.Count));
            foreach (int t in s.TokenIds)
            {
                hash.AppendData(BitConverter.GetBytes(t));
            }

            foreach (float lp in s.PolicyLogProbs)
            {
                hash.AppendData(BitConverter.GetBytes(lp));
            }
        }

        return new SamplingRun(Generator.Stats, ms, group.Samples.Select(s => s.TokenIds.Count).ToArray(), Convert.ToHexStringLower(hash.GetHashAndReset()));
    }

    public void Dispose()
    {
        Generator.Dispose();
        Model.Dispose();
    }
}

using BenchmarkDotNet.Attributes;
using Engine.Core;

namespace Engine.Benchmarks;

/// <summary>
/// The RL loss terms (each forward and backward in one pass) over a preset's B*T tokens, on every
/// backend: DAPO's clipped surrogate with the dual clip, a k3 KL term and an entropy bonus, as the
/// trainer runs them for GRPO with a KL reference. tokens/s is tokens over the median.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(TokensConfig))]
public class PolicyLossBenchmarks : KernelBenchmarkBase
{
    private static readonly PolicyLossSettings Settings = new(EpsLow: 0.2f, EpsHigh: 0.28f, DualClip: 3f);

    private Tensor dlogp, dentropy, stats, klStats, entropyStats, logp, logpOld, advantages, mask, weights, logpRef, entropy;
    private int n;

    /// <summary>Log-probs near each other (ratios around 1, some clipped), mixed-sign advantages, every token counted.</summary>
    [GlobalSetup]
    public void Setup()
    {
        Open();
        n = Rows;
        dlogp = Zeros(n);
        dentropy = Zeros(n);
        stats = Zeros(PolicyLossStats.Count);
        klStats = Zeros(KlLossStats.Count);
        entropyStats = Zeros(EntropyStats.Count);
        logp = Random(n, 1, scale: 1f, offset: -2f);
        logpOld = Random(n, 2, scale: 1f, offset: -2f);
        advantages = Random(n, 3, scale: 2f);
        mask = Zeros(n);
        Acc.Fill(mask, 1f);
        weights = Zeros(n);
        Acc.Fill(weights, 1f / n);
        logpRef = Random(n, 4, scale: 1f, offset: -2f);
        entropy = Random(n, 5, scale: 1f, offset: 2f);
    }

    /// <summary>dlogp, dentropy and the statistics.</summary>
    [Benchmark]
    public void PolicyLoss()
    {
        Acc.PolicyLoss(dlogp, stats, logp, logpOld, advantages, mask, weights, Settings, n);
        Acc.KlLoss(dlogp, klStats, logp, logpRef, mask, weights, 0.01f, KlEstimator.K3, n);
        Acc.EntropyBonus(dentropy, entropyStats, entropy, mask, weights, 0.001f, n);
        Acc.Synchronize();
    }
}

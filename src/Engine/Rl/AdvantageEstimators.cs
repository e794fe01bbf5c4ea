namespace Engine.Rl;

/// <summary>
/// Turns a group's rewards into one advantage per response (broadcast to its tokens by the trainer).
/// GRPO, Dr. GRPO and "none" (the distillation-only arm) are here; a new estimator is a new class.
/// </summary>
internal interface IAdvantageEstimator
{
    /// <summary>Advantages of one group's responses from their rewards.</summary>
    void Compute(ReadOnlySpan<double> rewards, Span<double> advantages);
}

/// <summary>GRPO's group-normalised advantage, or Dr. GRPO's mean-centred one (<see cref="Advantages.Group"/>).</summary>
internal sealed class GroupAdvantage(bool normalizeByStd) : IAdvantageEstimator
{
    public void Compute(ReadOnlySpan<double> rewards, Span<double> advantages) => Advantages.Group(rewards, advantages, normalizeByStd);
}

/// <summary>Zero advantages: the reward does not enter the loss (KDRL's distillation-only arm).</summary>
internal sealed class NoAdvantage : IAdvantageEstimator
{
    public void Compute(ReadOnlySpan<double> rewards, Span<double> advantages) => advantages.Clear();
}

/// <summary>Group-relative advantages (rl-core.md).</summary>
internal static class Advantages
{
    /// <summary>Added to the standard deviation, as in verl.</summary>
    public const double Epsilon = 1e-6;

    /// <summary>
    /// GRPO: <c>A_i = (R_i - mean) / (std + 1e-6)</c> with the sample (N-1) standard deviation;
    /// Dr. GRPO (<paramref name="normalizeByStd"/> false): <c>A_i = R_i - mean</c>. A group of one has
    /// mean 0 and std 1 (verl's edge case). When every reward of the group is equal, every advantage
    /// is exactly 0 (not a rounding residue of the mean).
    /// </summary>
    public static void Group(ReadOnlySpan<double> rewards, Span<double> advantages, bool normalizeByStd)
    {
        int n = rewards.Length;
        if (advantages.Length != n)
        {
            throw new ArgumentException("advantages must have one entry per reward", nameof(advantages));
        }

        if (n == 0)
        {
            return;
        }

        if (AllEqual(rewards) && n > 1)
        {
            advantages.Clear();
            return;
        }

        double mean = 0, std = 1;
        if (n > 1)
        {
            double sum = 0;
            foreach (double r in rewards)
            {
                sum += r;
            }

            mean = sum / n;
            double ss = 0;
            foreach (double r in rewards)
            {
                ss += (r - mean) * (r - mean);
            }

            std = Math.Sqrt(ss / (n - 1));
        }

        for (int i = 0; i < n; i++)
        {
            advantages[i] = normalizeByStd ? (rewards[i] - mean) / (std + Epsilon) : rewards[i] - mean;
        }
    }

    /// <summary>True when every reward equals the first (dynamic sampling drops such groups).</summary>
    public static bool AllEqual(ReadOnlySpan<double> rewards)
    {
        for (int i = 1; i < rewards.Length; i++)
        {
            if (rewards[i] != rewards[0])
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// DAPO's soft overlong punishment for a response of <paramref name="length"/> tokens with
    /// L_max = <paramref name="maxLength"/> and L_cache = <paramref name="buffer"/>: 0 up to
    /// L_max - L_cache, then falling linearly to -1 at L_max, and -1 beyond.
    /// </summary>
    public static double SoftOverlongPenalty(int length, int maxLength, int buffer)
    {
        int expected = maxLength - buffer;
        if (length <= expected)
        {
            return 0;
        }

        if (length <= maxLength)
        {
            return buffer == 0 ? 0 : (double)(expected - length) / buffer;
        }

        return -1;
    }
}

/// <summary>Per-token weights that implement an aggregation mode over a whole mini-batch.</summary>
internal static class LossWeights
{
    /// <summary>
    /// Fills one weight per token of every sequence of a mini-batch so that
    /// <c>loss = sum_t w_t l_t</c>. The weights use the mini-batch's totals, so splitting it into
    /// micro-batches leaves the loss and gradients unchanged.
    /// </summary>
    /// <param name="masks">Per sequence, the loss mask of its response tokens.</param>
    /// <param name="mode">Aggregation mode.</param>
    /// <param name="normLength">L_norm of <see cref="LossAggregation.SeqMeanTokenSumNorm"/>.</param>
    /// <returns>Per sequence, the weight of each response token.</returns>
    public static float[][] Compute(IReadOnlyList<float[]> masks, LossAggregation mode, int normLength)
    {
        double totalTokens = 0;
        int nonEmpty = 0;
        foreach (float[] m in masks)
        {
            double s = Sum(m);
            totalTokens += s;
            nonEmpty += s > 0 ? 1 : 0;
        }

        var result = new float[masks.Count][];
        for (int i = 0; i < masks.Count; i++)
        {
            float[] m = masks[i];
            double length = Sum(m);
            double denominator = mode switch
            {
                LossAggregation.TokenMean => totalTokens,
                LossAggregation.SeqMeanTokenMean => nonEmpty * length,
                _ => (double)masks.Count * normLength,
            };
            result[i] = new float[m.Length];
            for (int t = 0; t < m.Length; t++)
            {
                result[i][t] = denominator > 0 ? (float)(m[t] / denominator) : 0f;
            }
        }

        return result;
    }

    private static double Sum(float[] values)
    {
        double s = 0;
        foreach (float v in values)
        {
            s += v;
        }

        return s;
    }
}

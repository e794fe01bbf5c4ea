using Engine.Core;

namespace Engine.Generation;

/// <summary>What a length predictor sees of a sample once it has generated its first k tokens.</summary>
/// <param name="SequenceId">The sample's sequence id (keys its random numbers).</param>
/// <param name="PromptLength">Tokens in its prompt.</param>
/// <param name="Tokens">Its first k generated tokens.</param>
/// <param name="PolicyLogProbs">Their log-probabilities under the policy.</param>
/// <param name="Hidden">The policy's final-norm hidden state at the k-th generated token ([model dim]).</param>
internal sealed record LengthEvidence(long SequenceId, int PromptLength, int[] Tokens, float[] PolicyLogProbs, float[] Hidden);

/// <summary>
/// Estimates a sample's final length (generated tokens) from its first <see cref="PrefixTokens"/>
/// generated tokens. Predictions only order and group the work: completions never depend on them.
/// </summary>
internal interface ILengthPredictor
{
    /// <summary>k: generated tokens a sample is decoded for before its length is predicted.</summary>
    int PrefixTokens { get; }

    /// <summary>Predicted final length in generated tokens.</summary>
    double Predict(LengthEvidence evidence);

    /// <summary>Told the true final length of a sample it saw (online predictors learn from it).</summary>
    void Learn(LengthEvidence evidence, int finalLength);
}

/// <summary>Knows every sample's true length (from an earlier run with the same seed): for measuring the scheduler alone.</summary>
internal sealed class OracleLengthPredictor(IReadOnlyDictionary<long, int> lengths, int prefixTokens = 16) : ILengthPredictor
{
    public int PrefixTokens { get; } = prefixTokens;

    public double Predict(LengthEvidence evidence) => lengths.TryGetValue(evidence.SequenceId, out int n)
        ? n
        : throw new EngineException($"the oracle length predictor has no length for sequence {evidence.SequenceId}");

    public void Learn(LengthEvidence evidence, int finalLength)
    {
    }
}

/// <summary>
/// A linear probe on the policy's hidden state, learnt online: after each finished sample it adds
/// (final-norm hidden state at the k-th generated token, 1) -> final length to the normal
/// equations, and predicts with the ridge least-squares fit of everything seen so far (the bias
/// is not penalised; lambda is <see cref="Ridge"/> times the mean diagonal of the Gram matrix, so
/// it follows the features' scale). With fewer than two examples it predicts their mean (0 with
/// none). The fit is refreshed lazily, once per batch of predictions.
/// </summary>
internal sealed class OnlineLengthPredictor(int prefixTokens = 16, double ridge = 1.0) : ILengthPredictor
{
    private double[] gram = [];
    private double[] xty = [];
    private double[]? weights;
    private double sumY;

    public int PrefixTokens { get; } = prefixTokens;

    /// <summary>Ridge strength relative to the mean feature energy.</summary>
    public double Ridge { get; } = ridge;

    /// <summary>Finished samples learnt from.</summary>
    public int Examples { get; private set; }

    /// <summary>When set, <see cref="Learn"/> does nothing (benchmarks predict every timed call from the same fit).</summary>
    public bool Frozen { get; set; }

    public double Predict(LengthEvidence evidence)
    {
        if (Examples < 2)
        {
            return Examples == 0 ? 0 : sumY / Examples;
        }

        double[] w = weights ??= Solve();
        if (w.Length != evidence.Hidden.Length + 1)
        {
            throw new EngineException($"the length probe was fitted on {w.Length - 1} features, got {evidence.Hidden.Length}");
        }

        double y = w[^1];
        for (int i = 0; i < evidence.Hidden.Length; i++)
        {
            y += w[i] * evidence.Hidden[i];
        }

        return Math.Max(evidence.Tokens.Length, y);
    }

    public void Learn(LengthEvidence evidence, int finalLength)
    {
        if (Frozen)
        {
            return;
        }

        int d = evidence.Hidden.Length + 1;
        if (gram.Length == 0)
        {
            gram = new double[d * d];
            xty = new double[d];
        }
        else if (xty.Length != d)
        {
            throw new EngineException($"the length probe learns {xty.Length - 1} features, got {evidence.Hidden.Length}");
        }

        var x = new double[d];
        for (int i = 0; i < d - 1; i++)
        {
            x[i] = evidence.Hidden[i];
        }

        x[^1] = 1;
        for (int i = 0; i < d; i++)
        {
            xty[i] += x[i] * finalLength;
            for (int j = 0; j <= i; j++)
            {
                gram[i * d + j] += x[i] * x[j];
            }
        }

        sumY += finalLength;
        Examples++;
        weights = null;
    }

    /// <summary>Ridge solution by Cholesky on the lower triangle of (X^T X + lambda I') w = X^T y.</summary>
    private double[] Solve()
    {
        int d = xty.Length;
        double meanDiag = 0;
        for (int i = 0; i < d - 1; i++)
        {
            meanDiag += gram[i * d + i];
        }

        double lambda = Ridge * Math.Max(meanDiag / Math.Max(1, d - 1), 1e-12);
        var l = new double[d * d];
        for (int i = 0; i < d; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                double sum = gram[i * d + j] + (i == j ? (i < d - 1 ? lambda : 1e-9 * Examples) : 0);
                for (int t = 0; t < j; t++)
                {
                    sum -= l[i * d + t] * l[j * d + t];
                }

                l[i * d + j] = i == j ? Math.Sqrt(Math.Max(sum, 1e-300)) : sum / l[j * d + j];
            }
        }

        var z = new double[d];
        for (int i = 0; i < d; i++)
        {
            double sum = xty[i];
            for (int t = 0; t < i; t++)
            {
                sum -= l[i * d + t] * z[t];
            }

            z[i] = sum / l[i * d + i];
        }

        var w = new double[d];
        for (int i = d - 1; i >= 0; i--)
        {
            double sum = z[i];
            for (int t = i + 1; t < d; t++)
            {
                sum -= l[t * d + i] * w[t];
            }

            w[i] = sum / l[i * d + i];
        }

        return w;
    }
}

/// <summary>
/// Global grouping for length-aware scheduling: assigns jobs (samples' predicted remaining
/// lengths) to machines (decode slots, each running its lane of samples one after another) to keep
/// the largest machine load, the makespan, small. LPT (longest processing time first: jobs in
/// decreasing size, each to the least-loaded machine) is within (4/3 - 1/(3m)) of the optimal
/// makespan on m empty machines (Graham 1969); it stands in for the paper's unpublished FPTAS.
/// </summary>
internal static class MakespanPartition
{
    /// <summary>LPT's worst-case ratio to the optimal makespan on <paramref name="machines"/> empty machines.</summary>
    public static double LptBound(int machines) => 4.0 / 3 - 1.0 / (3.0 * machines);

    /// <summary>
    /// Machine of each job. <paramref name="preload"/> (optional, one per machine) is work a machine
    /// already has (a sample it is running). Ties go to the lower job index and machine index, so the
    /// plan is deterministic.
    /// </summary>
    public static int[] Lpt(IReadOnlyList<double> sizes, int machines, IReadOnlyList<double>? preload = null)
    {
        if (machines < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(machines), machines, "at least one machine");
        }

        var load = new double[machines];
        for (int m = 0; m < machines && preload is not null && m < preload.Count; m++)
        {
            load[m] = preload[m];
        }

        int[] order = Enumerable.Range(0, sizes.Count).OrderByDescending(j => sizes[j]).ThenBy(j => j).ToArray();
        var assignment = new int[sizes.Count];
        foreach (int j in order)
        {
            int best = 0;
            for (int m = 1; m < machines; m++)
            {
                if (load[m] < load[best])
                {
                    best = m;
                }
            }

            assignment[j] = best;
            load[best] += sizes[j];
        }

        return assignment;
    }

    /// <summary>Largest machine load of an assignment.</summary>
    public static double Makespan(IReadOnlyList<double> sizes, IReadOnlyList<int> assignment, int machines)
    {
        var load = new double[machines];
        for (int j = 0; j < sizes.Count; j++)
        {
            load[assignment[j]] += sizes[j];
        }

        return load.Max();
    }
}

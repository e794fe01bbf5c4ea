using Engine.Core;

namespace Engine.Pike;

/// <summary>Decides the shares of K tasks in every batch; adaptive mixers update them from per-task statistics.</summary>
internal interface IDataMixer
{
    /// <summary>Current shares w (on the simplex).</summary>
    IReadOnlyList<double> Weights { get; }

    /// <summary>Whether <see cref="Update"/> needs gradient statistics (false: static mixing, no extra backward).</summary>
    bool Adaptive { get; }

    /// <summary>One update from every task's statistics at the current parameters.</summary>
    void Update(IReadOnlyList<TaskStatistics> statistics);
}

/// <summary>Static mixing with fixed shares (equal by default): the "Mix" baseline.</summary>
internal sealed class StaticMixer(double[] weights) : IDataMixer
{
    public IReadOnlyList<double> Weights { get; } = Simplex.Normalize(weights);

    public bool Adaptive => false;

    public void Update(IReadOnlyList<TaskStatistics> statistics)
    {
    }
}

/// <summary>
/// PiKE's practical update (Algorithm 1): <c>w_k &lt;- w_k exp(zeta1 ||g_k||^2 - zeta2 sigma_k^2 / (2b))</c>, normalised.
/// </summary>
internal class PikeMixer : IDataMixer
{
    private double[] weights;

    public PikeMixer(double[] initial, double zeta1, double zeta2, int batchSize)
    {
        weights = Simplex.Normalize(initial);
        Zeta1 = zeta1;
        Zeta2 = zeta2;
        BatchSize = batchSize;
    }

    public double Zeta1 { get; }

    public double Zeta2 { get; }

    public int BatchSize { get; }

    public IReadOnlyList<double> Weights => weights;

    public bool Adaptive => true;

    public virtual void Update(IReadOnlyList<TaskStatistics> statistics) => Step(statistics, statistics.Select(_ => 1.0).ToArray());

    /// <summary>One PiKE step on the objective <c>sum_k y_k L_k</c>: the statistics of task k scale by <c>y_k^2</c>.</summary>
    protected void Step(IReadOnlyList<TaskStatistics> statistics, double[] taskWeights)
    {
        if (statistics.Count != weights.Length)
        {
            throw new EngineException($"PiKE: {statistics.Count} task statistics for {weights.Length} tasks");
        }

        var exponents = new double[weights.Length];
        for (int k = 0; k < exponents.Length; k++)
        {
            double y2 = taskWeights[k] * taskWeights[k];
            exponents[k] = y2 * (Zeta1 * statistics[k].NormSquared - Zeta2 * statistics[k].Variance / (2.0 * BatchSize));
        }

        weights = Simplex.Exponentiate(weights, exponents);
    }
}

/// <summary>
/// Balanced-PiKE (PiKE §3.3): the tilted objective <c>(1/tau) log sum_k exp(tau L_k)</c> through its dual task weights
/// <c>y = tau softmax(tau L)</c>. Each update alternates the two blocks: with the parameters fixed, y is refreshed from
/// the losses measured at this update; with y fixed, one PiKE step runs on <c>sum_k y_k L_k</c> (statistics scaled by y_k^2).
/// </summary>
internal sealed class BalancedPikeMixer(double[] initial, double zeta1, double zeta2, int batchSize, double tau)
    : PikeMixer(initial, zeta1, zeta2, batchSize)
{
    /// <summary>The task weights y of the last update (tau/K each before the first).</summary>
    public double[] TaskWeights { get; private set; } = [.. initial.Select(_ => tau / initial.Length)];

    public override void Update(IReadOnlyList<TaskStatistics> statistics)
    {
        TaskWeights = TiltedWeights(statistics.Select(s => s.Loss).ToArray(), tau);
        Step(statistics, TaskWeights);
    }

    /// <summary><c>y = tau softmax(tau L)</c>: sums to tau; tau/K each as tau -&gt; 0, all on the largest loss as tau -&gt; infinity.</summary>
    public static double[] TiltedWeights(double[] losses, double tau)
    {
        var logits = losses.Select(l => tau * l).ToArray();
        double[] softmax = Simplex.Exponentiate(losses.Select(_ => 1.0).ToArray(), logits);
        return [.. softmax.Select(p => tau * p)];
    }
}

/// <summary>Weights on the probability simplex, and their rounding to integer batch shares.</summary>
internal static class Simplex
{
    /// <summary>Weights scaled to sum 1 (all must be finite and non-negative with a positive sum).</summary>
    public static double[] Normalize(IReadOnlyList<double> weights)
    {
        double sum = 0;
        foreach (double w in weights)
        {
            if (!(w >= 0) || double.IsInfinity(w))
            {
                throw new EngineException($"mixture weights must be finite and non-negative, got {w}");
            }

            sum += w;
        }

        return sum > 0 ? [.. weights.Select(w => w / sum)] : throw new EngineException("mixture weights must not all be zero");
    }

    /// <summary>
    /// The exponentiated-gradient (mirror-descent) step <c>w_k exp(e_k) / sum_j w_j exp(e_j)</c>, computed in log space
    /// (the largest exponent subtracted) so that large exponents do not overflow. A non-finite exponent is an error.
    /// </summary>
    public static double[] Exponentiate(IReadOnlyList<double> weights, IReadOnlyList<double> exponents)
    {
        var logs = new double[weights.Count];
        double max = double.NegativeInfinity;
        for (int k = 0; k < logs.Length; k++)
        {
            if (!double.IsFinite(exponents[k]))
            {
                throw new EngineException($"mixture update: the exponent of task {k} is {exponents[k]} (non-finite gradient statistics)");
            }

            logs[k] = weights[k] > 0 ? Math.Log(weights[k]) + exponents[k] : double.NegativeInfinity;
            max = Math.Max(max, logs[k]);
        }

        return Normalize([.. logs.Select(l => Math.Exp(l - max))]);
    }

    /// <summary>
    /// Integer shares <c>b_k</c> summing to <paramref name="batchSize"/>, each at least <paramref name="minPerTask"/>, nearest to
    /// <c>batchSize w_k</c>: the floor of each (raised to the minimum), then the remaining samples one at a time to the task
    /// furthest below its target (or taken from the one furthest above it), ties to the lower index.
    /// </summary>
    public static int[] Round(IReadOnlyList<double> weights, int batchSize, int minPerTask)
    {
        int k = weights.Count;
        if ((long)k * minPerTask > batchSize)
        {
            throw new EngineException($"batch size {batchSize} cannot give each of {k} tasks {minPerTask} examples (raise batch_size or lower mix.min_per_task)");
        }

        var target = weights.Select(w => w * batchSize).ToArray();
        var counts = target.Select(t => Math.Max(minPerTask, (int)Math.Floor(t))).ToArray();
        int total = counts.Sum();
        while (total != batchSize)
        {
            int pick = -1;
            for (int i = 0; i < k; i++)
            {
                bool eligible = total < batchSize || counts[i] > minPerTask;
                double gap = total < batchSize ? target[i] - counts[i] : counts[i] - target[i];
                if (eligible && (pick < 0 || gap > (total < batchSize ? target[pick] - counts[pick] : counts[pick] - target[pick])))
                {
                    pick = i;
                }
            }

            counts[pick] += total < batchSize ? 1 : -1;
            total += total < batchSize ? 1 : -1;
        }

        return counts;
    }
}

/// <summary>The K = 2 closed form of methods.md §4 (PiKE Example 2.1), for tests and documentation.</summary>
internal static class PikeTheory
{
    /// <summary>
    /// The optimal share of task 1 for <c>L_k = 0.5 (theta . e_k)^2</c>, noise <c>s_k = sigma_k^2</c>, SGD step eta, batch b:
    /// <c>clip01((b^-1 (s2 - s1) + eta^-1 (t1 - t2) + t2) / (t1 + t2))</c> with <c>t_k = theta_k^2</c>.
    /// </summary>
    public static double OptimalShareK2(double theta1, double theta2, double s1, double s2, double eta, int b)
    {
        double t1 = theta1 * theta1, t2 = theta2 * theta2;
        return Math.Clamp(((s2 - s1) / b + (t1 - t2) / eta + t2) / (t1 + t2), 0, 1);
    }
}

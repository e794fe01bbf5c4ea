using Engine.Core;
using Engine.Util;

namespace Engine.OfflineRl;

/// <summary>Settings of one behaviour-cloning run.</summary>
internal sealed record BcOptions
{
    /// <summary>Adam updates.</summary>
    public int Steps { get; init; } = 2000;

    /// <summary>Rows per update (the whole set when it is smaller: full-batch).</summary>
    public int BatchSize { get; init; } = 256;

    /// <summary>Adam step size (the paper's student: 5e-3).</summary>
    public float LearningRate { get; init; } = 1e-3f;

    /// <summary>The loss on the softmax outputs.</summary>
    public BcLoss Loss { get; init; } = BcLoss.CrossEntropy;

    /// <summary>Seed of the minibatch order.</summary>
    public ulong Seed { get; init; } = 1;
}

/// <summary>Adam (no weight decay, no clipping) on an <see cref="MlpPolicy"/>'s flat parameters, through the AdamW op.</summary>
internal sealed class MlpAdam : IDisposable
{
    private readonly MlpPolicy policy;
    private readonly DeviceBuffer m, v;
    private int step;

    public MlpAdam(MlpPolicy policy)
    {
        this.policy = policy;
        m = policy.Acc.Allocate(policy.ParameterCount);
        v = policy.Acc.Allocate(policy.ParameterCount);
    }

    /// <summary>Forgets the moments and the step count (for a re-initialised network).</summary>
    public void Reset()
    {
        policy.Acc.Zero(m.All);
        policy.Acc.Zero(v.All);
        step = 0;
    }

    /// <summary>Applies the gradients in <see cref="MlpPolicy.Grads"/>.</summary>
    public void Step(float learningRate)
    {
        var settings = new AdamWSettings(learningRate, 0.9f, 0.999f, 1e-8f, 0f, ++step, 0f);
        policy.Acc.AdamW(policy.Params.All, policy.Grads.All, m.All, v.All, default, settings, policy.ParameterCount);
    }

    public void Dispose()
    {
        m.Dispose();
        v.Dispose();
    }
}

/// <summary>Behaviour cloning: fit the policy's action distribution to the data's actions.</summary>
internal static class BehaviourCloning
{
    /// <summary>
    /// Trains <paramref name="policy"/> on the rows <paramref name="rows"/> of <paramref name="observations"/> [*, D] /
    /// <paramref name="actions"/>: minibatches drawn without replacement, reshuffled every pass. Returns the last loss.
    /// <paramref name="afterStep"/>, when given, is called with the number of updates done after each one (e.g. to keep
    /// checkpoints along the way).
    /// </summary>
    public static float Train(MlpPolicy policy, ReadOnlySpan<float> observations, ReadOnlySpan<int> actions, int[] rows, BcOptions options,
        Action<int>? afterStep = null)
    {
        if (rows.Length == 0)
        {
            throw new EngineException("behaviour cloning: no rows to train on");
        }

        if (options.Steps <= 0 || options.BatchSize <= 0 || !(options.LearningRate > 0))
        {
            throw new EngineException("behaviour cloning: steps, batch size and learning rate must be positive");
        }

        int d = policy.InputSize;
        int batch = Math.Min(Math.Min(options.BatchSize, rows.Length), policy.MaxBatch);
        var order = (int[])rows.Clone();
        var random = new SplitMix64(options.Seed);
        var batchObs = new float[batch * d];
        var batchActions = new int[batch];
        using var adam = new MlpAdam(policy);
        int cursor = order.Length;
        float loss = 0;
        for (int s = 0; s < options.Steps; s++)
        {
            for (int i = 0; i < batch; i++)
            {
                if (cursor == order.Length)
                {
                    Shuffle(order, ref random);
                    cursor = 0;
                }

                int row = order[cursor++];
                observations.Slice(row * d, d).CopyTo(batchObs.AsSpan(i * d, d));
                batchActions[i] = actions[row];
            }

            loss = policy.LossAndGradients(batchObs, batchActions, batch, options.Loss);
            adam.Step(options.LearningRate);
            afterStep?.Invoke(s + 1);
        }

        return loss;
    }

    /// <summary>Fraction of <paramref name="rows"/> whose greedy action equals the label.</summary>
    public static double Accuracy(MlpPolicy policy, ReadOnlySpan<float> observations, ReadOnlySpan<int> actions, int[] rows)
    {
        int d = policy.InputSize;
        var obs = new float[rows.Length * d];
        for (int i = 0; i < rows.Length; i++)
        {
            observations.Slice(rows[i] * d, d).CopyTo(obs.AsSpan(i * d, d));
        }

        var predicted = new int[rows.Length];
        policy.Act(obs, rows.Length, predicted);
        int hits = 0;
        for (int i = 0; i < rows.Length; i++)
        {
            hits += predicted[i] == actions[rows[i]] ? 1 : 0;
        }

        return (double)hits / rows.Length;
    }

    /// <summary>Fisher-Yates shuffle in place.</summary>
    internal static void Shuffle(int[] values, ref SplitMix64 random)
    {
        for (int i = values.Length - 1; i > 0; i--)
        {
            int j = random.NextInt(i + 1);
            (values[i], values[j]) = (values[j], values[i]);
        }
    }
}

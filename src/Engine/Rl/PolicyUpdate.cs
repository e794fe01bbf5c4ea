using Engine.Core;
using Engine.Model;

namespace Engine.Rl;

/// <summary>One sampled response as the update sees it.</summary>
internal sealed class RolloutSequence
{
    public required int Group { get; init; }

    public required int[] Prompt { get; init; }

    public required int[] Response { get; init; }

    /// <summary>Log-prob of each response token under the policy that sampled it (the sampler's temperature-1 value).</summary>
    public required float[] OldLogProbs { get; init; }

    /// <summary>Loss mask per response token (0 when overlong filtering drops the response).</summary>
    public required float[] Mask { get; init; }

    public double Reward { get; set; }

    public bool Correct { get; init; }

    /// <summary>Cut at max_new_tokens.</summary>
    public bool Truncated { get; init; }

    public double Advantage { get; set; }

    /// <summary>Reference-policy log-probs per response token, when a reference model is in use.</summary>
    public float[]? RefLogProbs { get; set; }

    public int Length => Prompt.Length + Response.Length;
}

/// <summary>
/// The gradient side of an RL step: packs sequences into right-padded [B, T] micro-batches, runs
/// forward, log-probs and entropies, the clipped policy loss and the backward, accumulating
/// gradients over a mini-batch. Also computes reference log-probs.
/// </summary>
internal sealed class PolicyUpdate : IDisposable
{
    private const int LengthBucket = 16;
    private readonly Transformer model;
    private readonly DeviceBuffer stats;
    private DeviceBuffer? perToken;   // [5, capacity]: old logp, advantage, mask, weight, ref logp
    private int capacity;

    public PolicyUpdate(Transformer model)
    {
        this.model = model;
        stats = model.Acc.Allocate(PolicyLossStats.Count);
    }

    /// <summary>
    /// Forward + backward of every micro-batch of one mini-batch, accumulating into the model's
    /// gradients; returns the loss statistics summed over the mini-batch.
    /// </summary>
    public double[] Accumulate(IReadOnlyList<RolloutSequence> sequences, float[][] weights, in PolicyLossSettings settings, int microBatch,
        bool useReference)
    {
        Accelerator acc = model.Acc;
        acc.Zero(stats.All);
        for (int start = 0; start < sequences.Count; start += microBatch)
        {
            int count = Math.Min(microBatch, sequences.Count - start);
            var (b, t) = Stage(sequences, start, count, weights, useReference);
            int n = b * t;
            model.Forward();
            model.HeadForward(entropy: true);
            ActivationPlan plan = model.Plan;
            bool entropyGrad = settings.EntropyCoef != 0;
            acc.PolicyLoss(plan.DLogProbs, entropyGrad ? plan.DEntropy : default, stats.All, plan.LogProbs, Slot(0, n), Slot(1, n), Slot(2, n),
                Slot(3, n), useReference ? Slot(4, n) : default, plan.Entropy, settings, n);
            model.HeadBackward(entropyGrad);
        }

        var result = new float[PolicyLossStats.Count];
        acc.Download(stats.All, result);
        return result.Select(x => (double)x).ToArray();
    }

    /// <summary>Log-probs of every response token under <paramref name="reference"/>, stored on each sequence.</summary>
    public static void ReferenceLogProbs(Transformer reference, IReadOnlyList<RolloutSequence> sequences, int microBatch)
    {
        for (int start = 0; start < sequences.Count; start += microBatch)
        {
            int count = Math.Min(microBatch, sequences.Count - start);
            var (b, t, tokens, targets) = Pack(reference, sequences, start, count);
            reference.SetTokens(tokens, b, t);
            reference.SetTargets(targets);
            reference.Forward();
            reference.HeadForward(entropy: false);
            float[] logp = reference.Acc.ToArray(reference.Plan.LogProbs);
            for (int i = 0; i < count; i++)
            {
                RolloutSequence s = sequences[start + i];
                var values = new float[s.Response.Length];
                for (int j = 0; j < values.Length; j++)
                {
                    values[j] = logp[i * t + s.Prompt.Length - 1 + j];
                }

                s.RefLogProbs = values;
            }
        }
    }

    public void Dispose()
    {
        stats.Dispose();
        perToken?.Dispose();
    }

    private Tensor Slot(int index, int n) => perToken!.Slice((long)index * capacity, n);

    /// <summary>Uploads tokens, targets and the per-token loss inputs of one micro-batch.</summary>
    private (int B, int T) Stage(IReadOnlyList<RolloutSequence> sequences, int start, int count, float[][] weights, bool useReference)
    {
        var (b, t, tokens, targets) = Pack(model, sequences, start, count);
        model.SetTokens(tokens, b, t);
        model.SetTargets(targets);
        int n = b * t;
        if (n > capacity)
        {
            perToken?.Dispose();
            capacity = n;
            perToken = model.Acc.Allocate(5L * capacity);
        }

        var host = new float[5][];
        for (int k = 0; k < 5; k++)
        {
            host[k] = new float[n];
        }

        for (int i = 0; i < count; i++)
        {
            RolloutSequence s = sequences[start + i];
            int row = i * t + s.Prompt.Length - 1;
            for (int j = 0; j < s.Response.Length; j++)
            {
                host[0][row + j] = s.OldLogProbs[j];
                host[1][row + j] = (float)s.Advantage;
                host[2][row + j] = s.Mask[j];
                host[3][row + j] = weights[start + i][j];
                host[4][row + j] = useReference ? s.RefLogProbs![j] : 0f;
            }
        }

        for (int k = 0; k < 5; k++)
        {
            model.Acc.Upload(Slot(k, n), host[k]);
        }

        return (b, t);
    }

    /// <summary>Right-padded rows and next-token targets (response tokens only) of sequences [start, start + count).</summary>
    private static (int B, int T, int[] Tokens, int[] Targets) Pack(Transformer model, IReadOnlyList<RolloutSequence> sequences, int start, int count)
    {
        int longest = 0;
        for (int i = 0; i < count; i++)
        {
            longest = Math.Max(longest, sequences[start + i].Length);
        }

        int t = Math.Min(model.Config.MaxPositions, (longest + LengthBucket - 1) / LengthBucket * LengthBucket);
        t = Math.Max(t, longest);
        var tokens = new int[count * t];
        var targets = new int[count * t];
        Array.Fill(targets, -1);
        for (int i = 0; i < count; i++)
        {
            RolloutSequence s = sequences[start + i];
            s.Prompt.CopyTo(tokens, i * t);
            s.Response.CopyTo(tokens, i * t + s.Prompt.Length);
            for (int j = 0; j < s.Response.Length; j++)
            {
                targets[i * t + s.Prompt.Length - 1 + j] = s.Response[j];
            }
        }

        return (count, t, tokens, targets);
    }
}

using Engine.Core;
using Engine.Model;

namespace Engine.Rl;

/// <summary>
/// The gradient side of an RL step: packs a mini-batch's sequences into right-padded [B, T]
/// micro-batches, runs the policy's forward, log-probs and entropies, lets every loss term add
/// its gradient with respect to the log-probs, and runs the backward from that gradient,
/// accumulating into the model's gradients.
/// </summary>
internal sealed class PolicyUpdate : IDisposable
{
    private static readonly int ColumnCount = Enum.GetValues<RolloutColumn>().Length;
    private readonly Transformer model;
    private readonly bool[] gathered = new bool[ColumnCount];   // columns already gathered into this micro-batch's slots
    private DeviceBuffer? scratch;   // [2 + ColumnCount, capacity]: dlogp, dentropy, then the gathered columns
    private int capacity;

    public PolicyUpdate(Transformer model) => this.model = model;

    /// <summary>
    /// Forward + backward of every micro-batch of the mini-batch <paramref name="sequences"/> (indices into
    /// <paramref name="batch"/>), with the loss made of <paramref name="terms"/> in order.
    /// </summary>
    public void Accumulate(RolloutBatch batch, IReadOnlyList<int> sequences, IReadOnlyList<LossTerm> terms, int microBatch)
    {
        Accelerator acc = model.Acc;
        bool entropyGradient = terms.Any(t => t.WritesEntropyGradient);
        for (int start = 0; start < sequences.Count; start += microBatch)
        {
            int count = Math.Min(microBatch, sequences.Count - start);
            MicroBatchLayout layout = batch.Layout(Slice(sequences, start, count), model.Config.MaxPositions);
            int n = layout.B * layout.T;
            Reserve(n);
            model.SetTokens(layout.TokenIds, layout.B, layout.T);
            model.SetTargets(layout.Targets);
            model.Forward();
            model.HeadForward(entropy: true);
            Array.Clear(gathered);
            Tensor Column(RolloutColumn c)
            {
                Tensor slot = Slot(2 + (int)c, n);
                if (!gathered[(int)c])
                {
                    batch.Gather(slot, c, layout);
                    gathered[(int)c] = true;
                }

                return slot;
            }

            var context = new LossContext(acc, n, model.Plan.LogProbs, model.Plan.Entropy, Slot(0, n), Slot(1, n), Column);
            foreach (LossTerm term in terms)
            {
                term.Apply(context);
            }

            model.HeadBackward(Slot(0, n), entropyGradient ? Slot(1, n) : default);
        }
    }

    public void Dispose() => scratch?.Dispose();

    /// <summary>Indices [start, start + count) of a list.</summary>
    internal static int[] Slice(IReadOnlyList<int> list, int start, int count)
    {
        var result = new int[count];
        for (int i = 0; i < count; i++)
        {
            result[i] = list[start + i];
        }

        return result;
    }

    private void Reserve(int n)
    {
        if (n > capacity)
        {
            scratch?.Dispose();
            capacity = n;
            scratch = model.Acc.Allocate((2L + ColumnCount) * capacity);
        }
    }

    private Tensor Slot(int index, int n) => scratch!.Slice((long)index * capacity, n);
}

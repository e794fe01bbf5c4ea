namespace Engine.Core;

internal abstract partial class Accelerator
{
    /// <summary>
    /// Causal self-attention with grouped-query heads, computed tile by tile with an online
    /// softmax: no [B, H, T, T] matrix is stored. Query head h reads key/value head
    /// <c>h / (Hq / Hkv)</c>.
    /// </summary>
    /// <param name="output">[B, T, Hq*D] attention output, heads side by side.</param>
    /// <param name="lse">[B, Hq, T] saved log-sum-exp of the scaled scores, for the backward.</param>
    /// <param name="qkv">[B, T, (Hq + 2 Hkv) * D]: per row the Hq query heads, then Hkv key heads, then Hkv value heads.</param>
    /// <param name="b">Batch size B.</param>
    /// <param name="t">Sequence length T.</param>
    /// <param name="hq">Query heads Hq.</param>
    /// <param name="hkv">Key/value heads Hkv (divides Hq).</param>
    /// <param name="d">Head size D.</param>
    /// <param name="scale">Score scale, usually 1/sqrt(D).</param>
    public void AttentionForward(Tensor output, Tensor lse, Tensor qkv, int b, int t, int hq, int hkv, int d, float scale)
    {
        CheckAttention(b, t, hq, hkv, d);
        long rows = (long)b * t;
        Check(output, nameof(output), minLength: rows * hq * d);
        Check(lse, nameof(lse), minLength: rows * hq);
        Check(qkv, nameof(qkv), minLength: rows * (hq + 2 * hkv) * d);
        using (Profile("AttentionForward"))
        {
            AttentionForwardCore(output, lse, qkv, b, t, hq, hkv, d, scale);
        }
    }

    /// <summary>
    /// Attention backward, recomputing the probabilities from <paramref name="lse"/>:
    /// writes (not accumulates) <c>dqkv</c> [B, T, (Hq + 2 Hkv) * D] in the qkv layout.
    /// </summary>
    public void AttentionBackward(Tensor dqkv, Tensor doutput, Tensor qkv, Tensor output, Tensor lse,
        int b, int t, int hq, int hkv, int d, float scale)
    {
        CheckAttention(b, t, hq, hkv, d);
        long rows = (long)b * t;
        Check(dqkv, nameof(dqkv), minLength: rows * (hq + 2 * hkv) * d);
        Check(doutput, nameof(doutput), minLength: rows * hq * d);
        Check(qkv, nameof(qkv), minLength: rows * (hq + 2 * hkv) * d);
        Check(output, nameof(output), minLength: rows * hq * d);
        Check(lse, nameof(lse), minLength: rows * hq);
        using (Profile("AttentionBackward"))
        {
            AttentionBackwardCore(dqkv, doutput, qkv, output, lse, b, t, hq, hkv, d, scale);
        }
    }

    protected abstract void AttentionForwardCore(Tensor output, Tensor lse, Tensor qkv, int b, int t, int hq, int hkv, int d, float scale);

    protected abstract void AttentionBackwardCore(Tensor dqkv, Tensor doutput, Tensor qkv, Tensor output, Tensor lse,
        int b, int t, int hq, int hkv, int d, float scale);

    private static void CheckAttention(int b, int t, int hq, int hkv, int d)
    {
        CheckPositive(b, nameof(b));
        CheckPositive(t, nameof(t));
        CheckPositive(hq, nameof(hq));
        CheckPositive(hkv, nameof(hkv));
        CheckPositive(d, nameof(d));
        if (hq % hkv != 0)
        {
            throw new ArgumentException($"query heads ({hq}) must be a multiple of key/value heads ({hkv})");
        }
    }
}

namespace Engine.Core;

internal abstract partial class Accelerator
{
    /// <summary>
    /// Draws one token per row from logits [S, V] and reports two log-probs of it.
    /// Per row: temperature <c>t</c> (0 or less: greedy argmax, lowest id on ties), then top-k
    /// (<c>k &lt;= 0</c>: off) and top-p (<c>p &gt;= 1</c>: off; keeps every token whose probability is
    /// at least the largest threshold whose kept mass reaches p, so ties at the boundary stay),
    /// renormalise, and pick by inverse CDF over token ids in ascending order with the row's
    /// uniform number in [0, 1).
    /// </summary>
    /// <param name="tokens">[S] chosen ids.</param>
    /// <param name="sampleLogp">[S] log-prob of the chosen id under the distribution actually sampled (0 for greedy).</param>
    /// <param name="policyLogp">[S] log-prob of the chosen id under softmax(logits) at temperature 1, untruncated.</param>
    /// <param name="logits">[S, V] raw logits (not modified).</param>
    /// <param name="uniforms">[S] uniform numbers in [0, 1).</param>
    /// <param name="temperatures">[S] temperature per row.</param>
    /// <param name="topK">[S] top-k per row.</param>
    /// <param name="topP">[S] top-p per row, in (0, 1].</param>
    /// <param name="s">Rows S.</param>
    /// <param name="v">Vocabulary V.</param>
    public void SampleTokens(Tensor tokens, Tensor sampleLogp, Tensor policyLogp, Tensor logits, Tensor uniforms,
        Tensor temperatures, Tensor topK, Tensor topP, int s, int v)
    {
        CheckPositive(s, nameof(s));
        CheckPositive(v, nameof(v));
        Check(tokens, nameof(tokens), DType.I32, s);
        Check(sampleLogp, nameof(sampleLogp), minLength: s);
        Check(policyLogp, nameof(policyLogp), minLength: s);
        Check(logits, nameof(logits), minLength: (long)s * v);
        Check(uniforms, nameof(uniforms), minLength: s);
        Check(temperatures, nameof(temperatures), minLength: s);
        Check(topK, nameof(topK), DType.I32, s);
        Check(topP, nameof(topP), minLength: s);
        using (Profile("SampleTokens"))
        {
            SampleTokensCore(tokens, sampleLogp, policyLogp, logits, uniforms, temperatures, topK, topP, s, v);
        }
    }

    /// <summary>
    /// Copies whole rows: <c>dst[i, :] = src[rows[i], :]</c> for i in [0, n), rows of
    /// <paramref name="width"/> floats (e.g. the last hidden state of each sequence before the LM head).
    /// </summary>
    public void GatherRows(Tensor dst, Tensor src, Tensor rows, int n, int width)
    {
        CheckPositive(n, nameof(n));
        CheckPositive(width, nameof(width));
        Check(dst, nameof(dst), minLength: (long)n * width);
        Check(src, nameof(src), minLength: width);
        Check(rows, nameof(rows), DType.I32, n);
        using (Profile("GatherRows"))
        {
            GatherRowsCore(dst, src, rows, n, width);
        }
    }

    protected abstract void SampleTokensCore(Tensor tokens, Tensor sampleLogp, Tensor policyLogp, Tensor logits, Tensor uniforms,
        Tensor temperatures, Tensor topK, Tensor topP, int s, int v);

    protected abstract void GatherRowsCore(Tensor dst, Tensor src, Tensor rows, int n, int width);
}

namespace Engine.Core;

internal abstract partial class Accelerator
{
    /// <summary>
    /// Token embedding plus optional learned position embedding:
    /// <c>out[i,:] = wte[tokens[i],:] + wpe[positions[i],:]</c> for i in [0, n).
    /// </summary>
    /// <param name="output">[N, C] result.</param>
    /// <param name="tokens">[N] token ids, each in [0, V) (callers validate ids on the host).</param>
    /// <param name="positions">[N] positions, each in [0, P); ignored when <paramref name="wpe"/> is empty.</param>
    /// <param name="wte">[V, C] token embedding table.</param>
    /// <param name="wpe">[P, C] position table, or empty for models without learned positions.</param>
    /// <param name="n">Rows (tokens).</param>
    /// <param name="c">Channels.</param>
    public void EmbeddingForward(Tensor output, Tensor tokens, Tensor positions, Tensor wte, Tensor wpe, int n, int c)
    {
        CheckPositive(n, nameof(n));
        CheckPositive(c, nameof(c));
        Check(output, nameof(output), minLength: (long)n * c);
        Check(tokens, nameof(tokens), DType.I32, n);
        Check(wte, nameof(wte), minLength: c);
        if (!wpe.IsEmpty)
        {
            Check(positions, nameof(positions), DType.I32, n);
            Check(wpe, nameof(wpe), minLength: c);
        }

        using (Profile("EmbeddingForward"))
        {
            EmbeddingForwardCore(output, tokens, positions, wte, wpe, n, c);
        }
    }

    /// <summary>
    /// Embedding gradients: <c>dwte[tokens[i],:] += dout[i,:]</c> and, when <paramref name="dwpe"/>
    /// is given, <c>dwpe[positions[i],:] += dout[i,:]</c>. Deterministic: rows are summed in order.
    /// </summary>
    public void EmbeddingBackward(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens, Tensor positions, int n, int c)
    {
        CheckPositive(n, nameof(n));
        CheckPositive(c, nameof(c));
        Check(dout, nameof(dout), minLength: (long)n * c);
        Check(tokens, nameof(tokens), DType.I32, n);
        Check(dwte, nameof(dwte), minLength: c);
        if (!dwpe.IsEmpty)
        {
            Check(positions, nameof(positions), DType.I32, n);
            Check(dwpe, nameof(dwpe), minLength: c);
        }

        using (Profile("EmbeddingBackward"))
        {
            EmbeddingBackwardCore(dwte, dwpe, dout, tokens, positions, n, c);
        }
    }

    protected abstract void EmbeddingForwardCore(Tensor output, Tensor tokens, Tensor positions, Tensor wte, Tensor wpe, int n, int c);

    protected abstract void EmbeddingBackwardCore(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens, Tensor positions, int n, int c);
}

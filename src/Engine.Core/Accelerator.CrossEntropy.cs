namespace Engine.Core;

internal abstract partial class Accelerator
{
    /// <summary>
    /// LM head fused with log-softmax: for each row i with <c>targets[i] &gt;= 0</c>,
    /// <c>logits = x[i,:] W^T</c> (V values), <c>logp[i] = log softmax(logits)[targets[i]]</c> and,
    /// when requested, <c>entropy[i] = -sum_j p_j log p_j</c>. Rows are processed in blocks so the
    /// [N, V] logits are never held; rows with a negative target get 0 in both outputs.
    /// </summary>
    /// <param name="logp">[N] log-probability of each row's target.</param>
    /// <param name="entropy">[N] full-vocabulary entropy, or empty to skip it.</param>
    /// <param name="x">[N, C] final hidden states.</param>
    /// <param name="w">[V, C] head weight (the token embedding when tied).</param>
    /// <param name="targets">[N] target ids in [0, V), or negative to skip the row.</param>
    /// <param name="n">Rows N.</param>
    /// <param name="c">Channels C.</param>
    /// <param name="v">Vocabulary V.</param>
    public void TokenLogProbForward(Tensor logp, Tensor entropy, Tensor x, Tensor w, Tensor targets, int n, int c, int v)
    {
        CheckHead(x, w, targets, n, c, v);
        Check(logp, nameof(logp), minLength: n);
        CheckOptional(entropy, nameof(entropy), minLength: n);
        using (Profile("TokenLogProbForward"))
        {
            TokenLogProbForwardCore(logp, entropy, x, w, targets, n, c, v);
        }
    }

    /// <summary>
    /// Backward of <see cref="TokenLogProbForward"/> given <c>dL/dlogp</c> and optionally
    /// <c>dL/dentropy</c> per row; recomputes the logits block by block. Writes <c>dx</c> [N, C]
    /// and accumulates <c>dw</c> [V, C]. Per row the logit gradient is
    /// <c>dlogp (onehot - p) - dentropy p (log p + H)</c>.
    /// </summary>
    public void TokenLogProbBackward(Tensor dx, Tensor dw, Tensor dlogp, Tensor dentropy, Tensor x, Tensor w, Tensor targets,
        int n, int c, int v)
    {
        CheckHead(x, w, targets, n, c, v);
        Check(dx, nameof(dx), minLength: (long)n * c);
        Check(dw, nameof(dw), minLength: (long)v * c);
        Check(dlogp, nameof(dlogp), minLength: n);
        CheckOptional(dentropy, nameof(dentropy), minLength: n);
        using (Profile("TokenLogProbBackward"))
        {
            TokenLogProbBackwardCore(dx, dw, dlogp, dentropy, x, w, targets, n, c, v);
        }
    }

    /// <summary>
    /// Forward and backward in one pass, for losses whose <c>dL/dlogp</c> is known before the
    /// forward (cross-entropy: <c>-1/count</c> on counted rows): writes <c>logp</c> and <c>dx</c>,
    /// accumulates <c>dw</c>, computing each block of logits once.
    /// </summary>
    public void TokenLogProbForwardBackward(Tensor logp, Tensor dx, Tensor dw, Tensor dlogp, Tensor x, Tensor w, Tensor targets,
        int n, int c, int v)
    {
        CheckHead(x, w, targets, n, c, v);
        Check(logp, nameof(logp), minLength: n);
        Check(dx, nameof(dx), minLength: (long)n * c);
        Check(dw, nameof(dw), minLength: (long)v * c);
        Check(dlogp, nameof(dlogp), minLength: n);
        using (Profile("TokenLogProbForwardBackward"))
        {
            TokenLogProbForwardBackwardCore(logp, dx, dw, dlogp, x, w, targets, n, c, v);
        }
    }

    protected abstract void TokenLogProbForwardCore(Tensor logp, Tensor entropy, Tensor x, Tensor w, Tensor targets, int n, int c, int v);

    protected abstract void TokenLogProbBackwardCore(Tensor dx, Tensor dw, Tensor dlogp, Tensor dentropy, Tensor x, Tensor w, Tensor targets,
        int n, int c, int v);

    protected abstract void TokenLogProbForwardBackwardCore(Tensor logp, Tensor dx, Tensor dw, Tensor dlogp, Tensor x, Tensor w, Tensor targets,
        int n, int c, int v);

    private void CheckHead(Tensor x, Tensor w, Tensor targets, int n, int c, int v)
    {
        CheckPositive(n, nameof(n));
        CheckPositive(c, nameof(c));
        CheckPositive(v, nameof(v));
        Check(x, nameof(x), minLength: (long)n * c);
        Check(w, nameof(w), minLength: (long)v * c);
        Check(targets, nameof(targets), DType.I32, n);
    }
}

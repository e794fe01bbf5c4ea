namespace Engine.Core;

internal abstract partial class Accelerator
{
    /// <summary>
    /// LayerNorm over the last dimension: <c>out = (x - mean) * rstd * weight + bias</c>, with the
    /// biased variance as in PyTorch. Saves mean and rstd per row for the backward.
    /// </summary>
    /// <param name="output">[N, C].</param>
    /// <param name="mean">[N] saved row means.</param>
    /// <param name="rstd">[N] saved reciprocal standard deviations.</param>
    /// <param name="x">[N, C] input.</param>
    /// <param name="weight">[C] scale.</param>
    /// <param name="bias">[C] shift, or empty.</param>
    /// <param name="n">Rows.</param>
    /// <param name="c">Channels.</param>
    /// <param name="eps">Added to the variance.</param>
    public void LayerNormForward(Tensor output, Tensor mean, Tensor rstd, Tensor x, Tensor weight, Tensor bias, int n, int c, float eps)
    {
        CheckRows(n, c, output, x);
        Check(mean, nameof(mean), minLength: n);
        Check(rstd, nameof(rstd), minLength: n);
        Check(weight, nameof(weight), minLength: c);
        CheckOptional(bias, nameof(bias), minLength: c);
        using (Profile("LayerNormForward"))
        {
            LayerNormForwardCore(output, mean, rstd, x, weight, bias, n, c, eps);
        }
    }

    /// <summary>
    /// LayerNorm backward: <c>dx += d/dx</c>, <c>dweight += d/dweight</c>, <c>dbias += d/dbias</c>
    /// (dbias optional), from the mean and rstd the forward saved.
    /// </summary>
    public void LayerNormBackward(Tensor dx, Tensor dweight, Tensor dbias, Tensor dout, Tensor x, Tensor weight,
        Tensor mean, Tensor rstd, int n, int c)
    {
        CheckRows(n, c, dx, x);
        Check(dout, nameof(dout), minLength: (long)n * c);
        Check(dweight, nameof(dweight), minLength: c);
        CheckOptional(dbias, nameof(dbias), minLength: c);
        Check(weight, nameof(weight), minLength: c);
        Check(mean, nameof(mean), minLength: n);
        Check(rstd, nameof(rstd), minLength: n);
        using (Profile("LayerNormBackward"))
        {
            LayerNormBackwardCore(dx, dweight, dbias, dout, x, weight, mean, rstd, n, c);
        }
    }

    /// <summary>
    /// RMSNorm over the last dimension as in Llama/Qwen2:
    /// <c>out = x * rsqrt(mean(x^2) + eps) * weight</c>. Saves rstd per row.
    /// </summary>
    public void RmsNormForward(Tensor output, Tensor rstd, Tensor x, Tensor weight, int n, int c, float eps)
    {
        CheckRows(n, c, output, x);
        Check(rstd, nameof(rstd), minLength: n);
        Check(weight, nameof(weight), minLength: c);
        using (Profile("RmsNormForward"))
        {
            RmsNormForwardCore(output, rstd, x, weight, n, c, eps);
        }
    }

    /// <summary>RMSNorm backward: <c>dx += d/dx</c>, <c>dweight += d/dweight</c>.</summary>
    public void RmsNormBackward(Tensor dx, Tensor dweight, Tensor dout, Tensor x, Tensor weight, Tensor rstd, int n, int c)
    {
        CheckRows(n, c, dx, x);
        Check(dout, nameof(dout), minLength: (long)n * c);
        Check(dweight, nameof(dweight), minLength: c);
        Check(weight, nameof(weight), minLength: c);
        Check(rstd, nameof(rstd), minLength: n);
        using (Profile("RmsNormBackward"))
        {
            RmsNormBackwardCore(dx, dweight, dout, x, weight, rstd, n, c);
        }
    }

    protected abstract void LayerNormForwardCore(Tensor output, Tensor mean, Tensor rstd, Tensor x, Tensor weight, Tensor bias, int n, int c, float eps);

    protected abstract void LayerNormBackwardCore(Tensor dx, Tensor dweight, Tensor dbias, Tensor dout, Tensor x, Tensor weight,
        Tensor mean, Tensor rstd, int n, int c);

    protected abstract void RmsNormForwardCore(Tensor output, Tensor rstd, Tensor x, Tensor weight, int n, int c, float eps);

    protected abstract void RmsNormBackwardCore(Tensor dx, Tensor dweight, Tensor dout, Tensor x, Tensor weight, Tensor rstd, int n, int c);

    private void CheckRows(int n, int c, Tensor a, Tensor b)
    {
        CheckPositive(n, nameof(n));
        CheckPositive(c, nameof(c));
        Check(a, "output", minLength: (long)n * c);
        Check(b, "x", minLength: (long)n * c);
    }
}

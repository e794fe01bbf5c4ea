namespace Engine.Core;

/// <summary>Hyper-parameters of one AdamW update (decoupled weight decay, PyTorch semantics).</summary>
/// <param name="LearningRate">Step size.</param>
/// <param name="Beta1">First-moment decay.</param>
/// <param name="Beta2">Second-moment decay.</param>
/// <param name="Epsilon">Added to the root of the second moment.</param>
/// <param name="WeightDecay">Decoupled decay: <c>p -= lr * wd * p</c> before the Adam step.</param>
/// <param name="Step">1-based step count, for bias correction.</param>
/// <param name="MaxGradNorm">Clip threshold for the global gradient norm; 0 or less disables clipping.</param>
internal readonly record struct AdamWSettings(float LearningRate, float Beta1, float Beta2, float Epsilon, float WeightDecay, int Step,
    float MaxGradNorm);

internal abstract partial class Accelerator
{
    /// <summary>
    /// <c>result[0] += sum of x^2</c> over n elements, deterministically (fixed-size chunks
    /// reduced in order, whatever the thread count).
    /// </summary>
    public void SumOfSquares(Tensor result, Tensor x, long n)
    {
        CheckPositive(n, nameof(n));
        Check(result, nameof(result), minLength: 1);
        Check(x, nameof(x), minLength: n);
        using (Profile("SumOfSquares"))
        {
            SumOfSquaresCore(result, x, n);
        }
    }

    /// <summary>
    /// AdamW update of n parameters. When <paramref name="gradNormSquared"/> is given and
    /// clipping is on, gradients are scaled by <c>min(1, max_norm / (sqrt(normsq) + 1e-6))</c>
    /// (as torch.nn.utils.clip_grad_norm_) on the device, with no host round trip. When
    /// <paramref name="gradNormSquared"/> is given and not finite (a NaN or Inf among the
    /// gradients), the op does nothing: parameters and moments are left untouched.
    /// </summary>
    /// <param name="param">[n] parameters, updated in place.</param>
    /// <param name="grad">[n] gradients (not modified).</param>
    /// <param name="m">[n] first moments, updated.</param>
    /// <param name="v">[n] second moments, updated.</param>
    /// <param name="gradNormSquared">[1] squared global gradient norm, or empty.</param>
    /// <param name="settings">Hyper-parameters of this step.</param>
    /// <param name="n">Number of parameters.</param>
    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor gradNormSquared, in AdamWSettings settings, long n)
    {
        CheckPositive(n, nameof(n));
        CheckPositive(settings.Step, "step");
        Check(param, nameof(param), minLength: n);
        Check(grad, nameof(grad), minLength: n);
        Check(m, nameof(m), minLength: n);
        Check(v, nameof(v), minLength: n);
        CheckOptional(gradNormSquared, nameof(gradNormSquared), minLength: 1);
        using (Profile("AdamW"))
        {
            AdamWCore(param, grad, m, v, gradNormSquared, settings, n);
        }
    }

    protected abstract void SumOfSquaresCore(Tensor result, Tensor x, long n);

    protected abstract void AdamWCore(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor gradNormSquared, in AdamWSettings settings, long n);
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Engine.Core;

namespace Engine.Kernels.Cpu;

// Global gradient norm (sum of squares) and the AdamW update.
// SumOfSquares cuts x into fixed chunks of SumChunk elements (independent of the thread count);
// each chunk's sum is accumulated in double into its own scratch slot and the slots are added in
// chunk order, so the result is bit-identical for any thread count.
internal sealed unsafe partial class CpuAccelerator
{
    /// <summary>Elements per partial sum of <see cref="SumOfSquaresCore"/>.</summary>
    internal const long SumChunk = 64 * 1024;

    protected override void SumOfSquaresCore(Tensor result, Tensor x, long n)
    {
        long chunks = (n + SumChunk - 1) / SumChunk;
        double* partial = (double*)ReductionScratch(chunks * sizeof(double)); // [chunks]
        RunChunks(n, SumChunk, new SumOfSquaresKernel { X = F(x), Partial = partial });
        double total = 0;
        for (long k = 0; k < chunks; k++)
        {
            total += partial[k];
        }

        float* r = F(result);
        r[0] = (float)(r[0] + total);
    }

    protected override void AdamWCore(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor gradNormSquared, in AdamWSettings settings, long n)
    {
        float clip = 1f;
        if (!gradNormSquared.IsEmpty)
        {
            float normSquared = F(gradNormSquared)[0];
            if (!float.IsFinite(normSquared))
            {
                return; // a NaN or Inf among the gradients: the step is skipped, p, m and v untouched
            }

            if (settings.MaxGradNorm > 0)
            {
                // As torch.nn.utils.clip_grad_norm_: coefficient min(1, max_norm / (norm + 1e-6)).
                double norm = Math.Sqrt(normSquared);
                clip = (float)Math.Min(1.0, settings.MaxGradNorm / (norm + 1e-6));
            }
        }

        // As torch.optim.AdamW (single-tensor path): scalars in double, then applied in float.
        double bias1 = 1 - Math.Pow(settings.Beta1, settings.Step);
        double bias2 = 1 - Math.Pow(settings.Beta2, settings.Step);
        RunChunks(n, ElementChunk, new AdamWKernel
        {
            Param = F(param), Grad = F(grad), M = F(m), V = F(v),
            Clip = clip,
            Decay = (float)(1 - (double)settings.LearningRate * settings.WeightDecay),
            Beta1 = settings.Beta1,
            OneMinusBeta1 = (float)(1 - (double)settings.Beta1),
            Beta2 = settings.Beta2,
            OneMinusBeta2 = (float)(1 - (double)settings.Beta2),
            NegStepSize = (float)(-settings.LearningRate / bias1),
            Bias2Sqrt = (float)Math.Sqrt(bias2),
            Epsilon = settings.Epsilon,
        });
    }
}

/// <summary>Partial[k] = sum of x^2 over chunk k (accumulated in double).</summary>
internal unsafe struct SumOfSquaresKernel : IChunkKernel
{
    public float* X;        // [n]
    public double* Partial; // [chunks]

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        float* x = X + start;
        long i = 0;
        double sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            // 16 double lanes (LaneOrder), as two Vector512.
            Vector512<double> a0 = default, a1 = default;
            for (; i <= count - 16; i += 16)
            {
                (Vector512<double> l0, Vector512<double> h0) = Vector512.Widen(Vector512.Load(x + i));
                a0 = Vector512.FusedMultiplyAdd(l0, l0, a0);
                a1 = Vector512.FusedMultiplyAdd(h0, h0, a1);
            }

            sum = LaneOrder.Sum(a0, a1);
        }
        else
        {
            // The same 16 double lanes as four Vector256.
            Vector256<double> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= count - 16; i += 16)
            {
                (Vector256<double> l0, Vector256<double> h0) = Vector256.Widen(Vector256.Load(x + i));
                (Vector256<double> l1, Vector256<double> h1) = Vector256.Widen(Vector256.Load(x + i + 8));
                a0 = Vector256.FusedMultiplyAdd(l0, l0, a0);
                a1 = Vector256.FusedMultiplyAdd(h0, h0, a1);
                a2 = Vector256.FusedMultiplyAdd(l1, l1, a2);
                a3 = Vector256.FusedMultiplyAdd(h1, h1, a3);
            }

            sum = LaneOrder.Sum(a0, a1, a2, a3);
        }

        for (; i < count; i++)
        {
            double xi = x[i];
            sum = Math.FusedMultiplyAdd(xi, xi, sum);
        }

        Partial[start / CpuAccelerator.SumChunk] = sum;
    }
}

/// <summary>
/// AdamW over elements, in the order of torch.optim.AdamW: g = grad * clip; p *= 1 - lr wd;
/// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p += (-lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps).
/// </summary>
internal unsafe struct AdamWKernel : IChunkKernel
{
    public float* Param; // [n] updated
    public float* Grad;  // [n]
    public float* M;     // [n] updated
    public float* V;     // [n] updated
    public float Clip;
    public float Decay;
    public float Beta1;
    public float OneMinusBeta1;
    public float Beta2;
    public float OneMinusBeta2;
    public float NegStepSize;
    public float Bias2Sqrt;
    public float Epsilon;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        float* p = Param + start, g = Grad + start, m = M + start, v = V + start;
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> clip = Vector512.Create(Clip), decay = Vector512.Create(Decay);
            Vector512<float> b1 = Vector512.Create(Beta1), c1 = Vector512.Create(OneMinusBeta1);
            Vector512<float> b2 = Vector512.Create(Beta2), c2 = Vector512.Create(OneMinusBeta2);
            Vector512<float> step = Vector512.Create(NegStepSize), bc2 = Vector512.Create(Bias2Sqrt), eps = Vector512.Create(Epsilon);
            for (; i <= count - 16; i += 16)
            {
                Vector512<float> gi = Vector512.Load(g + i) * clip;
                Vector512<float> mi = b1 * Vector512.Load(m + i) + c1 * gi;
                Vector512<float> vi = b2 * Vector512.Load(v + i) + c2 * gi * gi;
                Vector512<float> denom = Vector512.Sqrt(vi) / bc2 + eps;
                (Vector512.Load(p + i) * decay + step * mi / denom).Store(p + i);
                mi.Store(m + i);
                vi.Store(v + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> clip = Vector256.Create(Clip), decay = Vector256.Create(Decay);
            Vector256<float> b1 = Vector256.Create(Beta1), c1 = Vector256.Create(OneMinusBeta1);
            Vector256<float> b2 = Vector256.Create(Beta2), c2 = Vector256.Create(OneMinusBeta2);
            Vector256<float> step = Vector256.Create(NegStepSize), bc2 = Vector256.Create(Bias2Sqrt), eps = Vector256.Create(Epsilon);
            for (; i <= count - 8; i += 8)
            {
                Vector256<float> gi = Vector256.Load(g + i) * clip;
                Vector256<float> mi = b1 * Vector256.Load(m + i) + c1 * gi;
                Vector256<float> vi = b2 * Vector256.Load(v + i) + c2 * gi * gi;
                Vector256<float> denom = Vector256.Sqrt(vi) / bc2 + eps;
                (Vector256.Load(p + i) * decay + step * mi / denom).Store(p + i);
                mi.Store(m + i);
                vi.Store(v + i);
            }
        }

        for (; i < count; i++)
        {
            float gi = g[i] * Clip;
            float mi = Beta1 * m[i] + OneMinusBeta1 * gi;
            float vi = Beta2 * v[i] + OneMinusBeta2 * gi * gi;
            float denom = MathF.Sqrt(vi) / Bias2Sqrt + Epsilon;
            p[i] = p[i] * Decay + NegStepSize * mi / denom;
            m[i] = mi;
            v[i] = vi;
        }
    }
}

using Engine.Core;

namespace Engine.Kernels.Gpu;

// Global gradient norm and AdamW; kernels in Kernels/Optimizer.h. SumOfSquares cuts x into
// chunks whose size depends on n alone, reduces each in one work-group into a partial (8 bytes:
// double where the device has fp64), then adds the partials in one work-group: reproducible, no
// atomics. AdamW reads the squared norm on the device when clipping.
internal abstract partial class GpuAccelerator
{
    /// <summary>Fewest elements per partial sum.</summary>
    private const long SumMinChunk = 16 * 1024;

    /// <summary>Most partial sums.</summary>
    private const long SumMaxChunks = 1024;

    private readonly Scratch sumPartial;

    protected override void SumOfSquaresCore(Tensor result, Tensor x, long n)
    {
        long chunk = Math.Max(SumMinChunk, (n + SumMaxChunks - 1) / SumMaxChunks);
        long chunks = (n + chunk - 1) / chunk;
        ulong partial = sumPartial.Ensure(chunks * sizeof(double)); // [chunks] acc_t
        Run(Args(GpuKernel.SumOfSquaresPartials).Address(partial).Tensor(x).Long(n).Long(chunk), chunks * Wg, Wg);
        Run(Args(GpuKernel.SumOfSquaresFinish).Tensor(result).Address(partial).Int((int)chunks), Wg, Wg);
    }

    protected override void AdamWCore(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor gradNormSquared, in AdamWSettings settings, long n)
    {
        // As torch.optim.AdamW (single-tensor path): scalars in double, then applied in float.
        double bias1 = 1 - Math.Pow(settings.Beta1, settings.Step);
        double bias2 = 1 - Math.Pow(settings.Beta2, settings.Step);
        KernelArgs args = Args(GpuKernel.AdamW).Tensor(param).Tensor(grad).Tensor(m).Tensor(v).Tensor(gradNormSquared)
            .Flag(!gradNormSquared.IsEmpty).Float(settings.MaxGradNorm)
            .Float((float)(1 - (double)settings.LearningRate * settings.WeightDecay))
            .Float(settings.Beta1).Float((float)(1 - (double)settings.Beta1))
            .Float(settings.Beta2).Float((float)(1 - (double)settings.Beta2))
            .Float((float)(-settings.LearningRate / bias1)).Float((float)Math.Sqrt(bias2)).Float(settings.Epsilon).Long(n);
        Run(args, ElementwiseItems(n), Wg);
    }
}

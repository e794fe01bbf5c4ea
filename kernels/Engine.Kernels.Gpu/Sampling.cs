using Engine.Core;

namespace Engine.Kernels.Gpu;

// Token sampling (one work-group per row; the kept tokens' exp values go to a scratch row) and row
// gather; kernels in Kernels/Sampling.h.
internal abstract partial class GpuAccelerator
{
    private readonly Scratch samplingValues;

    protected override void SampleTokensCore(Tensor tokens, Tensor sampleLogp, Tensor policyLogp, Tensor logits, Tensor uniforms,
        Tensor temperatures, Tensor topK, Tensor topP, int s, int v)
    {
        ulong values = samplingValues.Ensure((long)s * v * sizeof(float)); // [S, V]
        KernelArgs args = Args(GpuKernel.SampleTokens).Tensor(tokens).Tensor(sampleLogp).Tensor(policyLogp).Tensor(logits)
            .Tensor(uniforms).Tensor(temperatures).Tensor(topK).Tensor(topP).Address(values).Int(v);
        Run(args, (long)s * Wg, Wg);
    }

    protected override void GatherRowsCore(Tensor dst, Tensor src, Tensor rows, int n, int width) =>
        Run(Args(GpuKernel.GatherRows).Tensor(dst).Tensor(src).Tensor(rows).Int(n).Int(width).Long(src.Length / width),
            width, GridRows(n), Math.Min(Wg, 64), 1);
}

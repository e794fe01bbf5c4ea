using Engine.Core;

namespace Engine.Kernels.Cuda;

// Token sampling (one block per row; the kept tokens' exp values go to a scratch row) and row
// gather; kernels in Kernels/Sampling.cu.
internal sealed partial class CudaAccelerator
{
    private readonly CudaScratch samplingValues;

    protected override void SampleTokensCore(Tensor tokens, Tensor sampleLogp, Tensor policyLogp, Tensor logits, Tensor uniforms,
        Tensor temperatures, Tensor topK, Tensor topP, int s, int v)
    {
        ulong values = samplingValues.Ensure((long)s * v * sizeof(float)); // [S, V]
        KernelArgs args = Args(CudaKernel.SampleTokens).Tensor(tokens).Tensor(sampleLogp).Tensor(policyLogp).Tensor(logits)
            .Tensor(uniforms).Tensor(temperatures).Tensor(topK).Tensor(topP).Ptr(values).Int(v);
        Run(args, (long)s * Wg, Wg);
    }

    protected override void GatherRowsCore(Tensor dst, Tensor src, Tensor rows, int n, int width) =>
        Run(Args(CudaKernel.GatherRows).Tensor(dst).Tensor(src).Tensor(rows).Int(n).Int(width).Long(src.Length / width),
            width, GridRows(n), Math.Min(Wg, 64), 1);
}

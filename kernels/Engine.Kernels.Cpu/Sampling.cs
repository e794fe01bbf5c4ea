using Engine.Core;

namespace Engine.Kernels.Cpu;

internal sealed unsafe partial class CpuAccelerator
{
    protected override void SampleTokensCore(Tensor tokens, Tensor sampleLogp, Tensor policyLogp, Tensor logits, Tensor uniforms,
        Tensor temperatures, Tensor topK, Tensor topP, int s, int v) => throw new NotSupportedException("pending");

    protected override void GatherRowsCore(Tensor dst, Tensor src, Tensor rows, int n, int width) => throw new NotSupportedException("pending");
}

using Engine.Core;

namespace Engine.Kernels.Cpu;

internal sealed unsafe partial class CpuAccelerator
{
    protected override void LayerNormForwardCore(Tensor output, Tensor mean, Tensor rstd, Tensor x, Tensor weight, Tensor bias, int n, int c, float eps) =>
        throw new NotSupportedException("pending");

    protected override void LayerNormBackwardCore(Tensor dx, Tensor dweight, Tensor dbias, Tensor dout, Tensor x, Tensor weight,
        Tensor mean, Tensor rstd, int n, int c) => throw new NotSupportedException("pending");

    protected override void RmsNormForwardCore(Tensor output, Tensor rstd, Tensor x, Tensor weight, int n, int c, float eps) =>
        throw new NotSupportedException("pending");

    protected override void RmsNormBackwardCore(Tensor dx, Tensor dweight, Tensor dout, Tensor x, Tensor weight, Tensor rstd, int n, int c) =>
        throw new NotSupportedException("pending");
}

using Engine.Core;

namespace Engine.Kernels.Gpu;

// Element-wise activations: GELU (tanh form), SwiGLU, residual add, scale; kernels in
// Kernels/Activation.h.
internal abstract partial class GpuAccelerator
{
    protected override void GeluForwardCore(Tensor y, Tensor x, long n) =>
        Run(Args(GpuKernel.GeluForward).Tensor(y).Tensor(x).Long(n), ElementwiseItems(n), Wg);

    protected override void GeluBackwardCore(Tensor dx, Tensor dy, Tensor x, long n) =>
        Run(Args(GpuKernel.GeluBackward).Tensor(dx).Tensor(dy).Tensor(x).Long(n), ElementwiseItems(n), Wg);

    protected override void SwiGluForwardCore(Tensor y, Tensor gateUp, int n, int f) =>
        Run(Args(GpuKernel.SwiGluForward).Tensor(y).Tensor(gateUp).Int(n).Int(f), f, GridRows(n), Math.Min(Wg, 64), 1);

    protected override void SwiGluBackwardCore(Tensor dGateUp, Tensor dy, Tensor gateUp, int n, int f) =>
        Run(Args(GpuKernel.SwiGluBackward).Tensor(dGateUp).Tensor(dy).Tensor(gateUp).Int(n).Int(f), f, GridRows(n), Math.Min(Wg, 64), 1);

    protected override void AddCore(Tensor y, Tensor a, Tensor b, long n) =>
        Run(Args(GpuKernel.Add).Tensor(y).Tensor(a).Tensor(b).Long(n), ElementwiseItems(n), Wg);

    protected override void ScaleCore(Tensor x, float s, long n) =>
        Run(Args(GpuKernel.Scale).Tensor(x).Float(s).Long(n), ElementwiseItems(n), Wg);
}

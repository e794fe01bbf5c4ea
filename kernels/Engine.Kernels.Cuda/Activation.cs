using Engine.Core;

namespace Engine.Kernels.Cuda;

// Element-wise activations: GELU (tanh form), SwiGLU, residual add, scale; kernels in
// Kernels/Activation.cu.
internal sealed partial class CudaAccelerator
{
    protected override void GeluForwardCore(Tensor y, Tensor x, long n) =>
        Run(Args(CudaKernel.GeluForward).Tensor(y).Tensor(x).Long(n), ElementwiseItems(n), Wg);

    protected override void GeluBackwardCore(Tensor dx, Tensor dy, Tensor x, long n) =>
        Run(Args(CudaKernel.GeluBackward).Tensor(dx).Tensor(dy).Tensor(x).Long(n), ElementwiseItems(n), Wg);

    protected override void SwiGluForwardCore(Tensor y, Tensor gateUp, int n, int f) =>
        Run(Args(CudaKernel.SwiGluForward).Tensor(y).Tensor(gateUp).Int(n).Int(f), f, GridRows(n), Math.Min(Wg, 64), 1);

    protected override void SwiGluBackwardCore(Tensor dGateUp, Tensor dy, Tensor gateUp, int n, int f) =>
        Run(Args(CudaKernel.SwiGluBackward).Tensor(dGateUp).Tensor(dy).Tensor(gateUp).Int(n).Int(f), f, GridRows(n), Math.Min(Wg, 64), 1);

    protected override void AddCore(Tensor y, Tensor a, Tensor b, long n) =>
        Run(Args(CudaKernel.Add).Tensor(y).Tensor(a).Tensor(b).Long(n), ElementwiseItems(n), Wg);

    protected override void ScaleCore(Tensor x, float s, long n) =>
        Run(Args(CudaKernel.Scale).Tensor(x).Float(s).Long(n), ElementwiseItems(n), Wg);
}

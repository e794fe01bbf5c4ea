using Engine.Core;

namespace Engine.Kernels.OpenCL;

// Element-wise activations: GELU (tanh form), SwiGLU, residual add, scale; kernels in
// Kernels/Activation.cl.
internal sealed partial class ClAccelerator
{
    protected override void GeluForwardCore(Tensor y, Tensor x, long n) =>
        Run(Args(ClKernel.GeluForward).Tensor(y).Tensor(x).Long(n), ElementwiseItems(n), Wg);

    protected override void GeluBackwardCore(Tensor dx, Tensor dy, Tensor x, long n) =>
        Run(Args(ClKernel.GeluBackward).Tensor(dx).Tensor(dy).Tensor(x).Long(n), ElementwiseItems(n), Wg);

    protected override void SwiGluForwardCore(Tensor y, Tensor gateUp, int n, int f) =>
        Run(Args(ClKernel.SwiGluForward).Tensor(y).Tensor(gateUp).Int(n).Int(f), f, n, Math.Min(Wg, 64), 1);

    protected override void SwiGluBackwardCore(Tensor dGateUp, Tensor dy, Tensor gateUp, int n, int f) =>
        Run(Args(ClKernel.SwiGluBackward).Tensor(dGateUp).Tensor(dy).Tensor(gateUp).Int(n).Int(f), f, n, Math.Min(Wg, 64), 1);

    protected override void AddCore(Tensor y, Tensor a, Tensor b, long n) =>
        Run(Args(ClKernel.Add).Tensor(y).Tensor(a).Tensor(b).Long(n), ElementwiseItems(n), Wg);

    protected override void ScaleCore(Tensor x, float s, long n) =>
        Run(Args(ClKernel.Scale).Tensor(x).Float(s).Long(n), ElementwiseItems(n), Wg);
}

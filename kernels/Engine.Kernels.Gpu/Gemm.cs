using Engine.Core;

namespace Engine.Kernels.Gpu;

// General matrix product and the bias gradient; kernels in Kernels/Gemm.h and each backend's own
// Gemm.cl or Gemm.cu. The GEMM kernels differ by backend (each chooses among its own, see Gemm),
// the bias gradient does not.
internal abstract partial class GpuAccelerator
{
    // C[m,n] = alpha * op(A)[m,k] op(B)[k,n] + beta * C + bias[n]
    protected override void GemmCore(Tensor c, Tensor a, Tensor b, int m, int n, int k, bool transA, bool transB,
        float alpha, float beta, Tensor bias) =>
        Gemm(Address(c), c.Offset, Address(a), a.Offset, Address(b), b.Offset, m, n, k, transA, transB, alpha, beta, bias);

    // db[cols] += sum over rows of dy[rows, cols]
    protected override void BiasBackwardCore(Tensor db, Tensor dy, int rows, int cols) =>
        Run(Args(GpuKernel.BiasBackward).Tensor(db).Tensor(dy).Int(rows).Int(cols), cols, Wg);

    /// <summary>The GEMM on raw buffers and element offsets (the LM head runs it on its scratch logits).</summary>
    protected abstract void Gemm(ulong c, long cOffset, ulong a, long aOffset, ulong b, long bOffset, int m, int n, int k,
        bool transA, bool transB, float alpha, float beta, Tensor bias);
}

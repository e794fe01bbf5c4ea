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

    /// <summary>
    /// The GEMM on raw buffers and element offsets (the LM head runs it on its scratch logits). Rows of
    /// C lie along the grid's y dimension: more rows than <see cref="GridSliceLimit"/> blocks hold are
    /// launched as consecutive row ranges of C and of an untransposed A (a row of C needs its row of A only).
    /// </summary>
    protected void Gemm(ulong c, long cOffset, ulong a, long aOffset, ulong b, long bOffset, int m, int n, int k,
        bool transA, bool transB, float alpha, float beta, Tensor bias)
    {
        long maxRows = GridSliceLimit > int.MaxValue ? long.MaxValue : GridSliceLimit * GemmRowsPerBlock;
        if (transA || m <= maxRows)
        {
            GemmLaunch(c, cOffset, a, aOffset, b, bOffset, m, n, k, transA, transB, alpha, beta, bias);
            return;
        }

        for (long m0 = 0; m0 < m; m0 += maxRows)
        {
            int rows = (int)Math.Min(maxRows, m - m0);
            GemmLaunch(c, cOffset + (m0 * n), a, aOffset + (m0 * k), b, bOffset, rows, n, k, transA, transB, alpha, beta, bias);
        }
    }

    /// <summary>Rows of C that one block of the backend's GEMM kernels covers along y (the smallest among its kernels).</summary>
    protected abstract int GemmRowsPerBlock { get; }

    /// <summary>One launch of the backend's GEMM kernel of choice (see <see cref="Gemm"/>).</summary>
    protected abstract void GemmLaunch(ulong c, long cOffset, ulong a, long aOffset, ulong b, long bOffset, int m, int n, int k,
        bool transA, bool transB, float alpha, float beta, Tensor bias);
}

using Engine.Core;

namespace Engine.Kernels.Cpu;

internal sealed unsafe partial class CpuAccelerator
{
    protected override void GemmCore(Tensor c, Tensor a, Tensor b, int m, int n, int k, bool transA, bool transB,
        float alpha, float beta, Tensor bias) =>
        CpuGemm.Multiply(Pool, F(c), F(a), F(b), m, n, k, transA, transB, alpha, beta, F(bias));

    protected override void BiasBackwardCore(Tensor db, Tensor dy, int rows, int cols)
    {
        float* g = F(db);
        float* y = F(dy);
        for (int r = 0; r < rows; r++)
        {
            for (int j = 0; j < cols; j++)
            {
                g[j] += y[(long)r * cols + j];
            }
        }
    }
}

/// <summary>Pointer-level GEMM used by every CPU kernel that needs a matrix product.</summary>
internal static unsafe class CpuGemm
{
    /// <summary>
    /// <c>C[m,n] = alpha * op(A) op(B) + beta * C + bias[n]</c>, row-major, dense (see
    /// <see cref="Accelerator.Gemm"/>). <paramref name="bias"/> may be null. With beta = 0, C is not read.
    /// </summary>
    public static void Multiply(CpuThreadPool pool, float* c, float* a, float* b, int m, int n, int k,
        bool transA, bool transB, float alpha, float beta, float* bias)
    {
        // Placeholder: plain loops, replaced by the packed, tiled kernel.
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float sum = 0;
                for (int p = 0; p < k; p++)
                {
                    float av = transA ? a[(long)p * m + i] : a[(long)i * k + p];
                    float bv = transB ? b[(long)j * k + p] : b[(long)p * n + j];
                    sum += av * bv;
                }

                float r = alpha * sum + (beta == 0 ? 0 : beta * c[(long)i * n + j]);
                c[(long)i * n + j] = bias == null ? r : r + bias[j];
            }
        }
    }
}

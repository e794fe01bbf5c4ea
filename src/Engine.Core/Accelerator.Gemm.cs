namespace Engine.Core;

internal abstract partial class Accelerator
{
    /// <summary>
    /// General matrix product, row-major and dense:
    /// <c>C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C + bias[n]</c>.
    /// <c>op(A)</c> is A stored [m,k], or A stored [k,m] when <paramref name="transA"/>;
    /// <c>op(B)</c> is B stored [k,n], or B stored [n,k] when <paramref name="transB"/>.
    /// </summary>
    /// <remarks>
    /// Training uses three forms. Linear forward <c>Y[N,O] = X[N,I] W[O,I]^T + b</c>:
    /// transB. Input gradient <c>dX[N,I] = dY[N,O] W[O,I]</c>: no transposes. Weight gradient
    /// <c>dW[O,I] += dY[N,O]^T X[N,I]</c>: transA with beta = 1. With beta = 0 the old contents
    /// of C are ignored (NaN included). C must not overlap A or B.
    /// </remarks>
    public void Gemm(Tensor c, Tensor a, Tensor b, int m, int n, int k, bool transA, bool transB,
        float alpha = 1f, float beta = 0f, Tensor bias = default)
    {
        CheckPositive(m, nameof(m));
        CheckPositive(n, nameof(n));
        CheckPositive(k, nameof(k));
        Check(c, nameof(c), minLength: (long)m * n);
        Check(a, nameof(a), minLength: (long)m * k);
        Check(b, nameof(b), minLength: (long)k * n);
        CheckOptional(bias, nameof(bias), minLength: n);
        // profiled, each shape is a line of its own (a decode step's projections differ in kind)
        using (Profile(Profiler is null ? "Gemm" : $"Gemm {(transA ? 'T' : 'N')}{(transB ? 'T' : 'N')} {m}x{n}x{k}"))
        {
            GemmCore(c, a, b, m, n, k, transA, transB, alpha, beta, bias);
        }
    }

    /// <summary>Bias gradient: <c>db[cols] += sum over rows of dy[rows, cols]</c>.</summary>
    public void BiasBackward(Tensor db, Tensor dy, int rows, int cols)
    {
        CheckPositive(rows, nameof(rows));
        CheckPositive(cols, nameof(cols));
        Check(db, nameof(db), minLength: cols);
        Check(dy, nameof(dy), minLength: (long)rows * cols);
        using (Profile("BiasBackward"))
        {
            BiasBackwardCore(db, dy, rows, cols);
        }
    }

    protected abstract void GemmCore(Tensor c, Tensor a, Tensor b, int m, int n, int k, bool transA, bool transB,
        float alpha, float beta, Tensor bias);

    protected abstract void BiasBackwardCore(Tensor db, Tensor dy, int rows, int cols);
}

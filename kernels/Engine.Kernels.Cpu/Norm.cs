using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Engine.Core;

namespace Engine.Kernels.Cpu;

// LayerNorm (GPT-2) and RMSNorm (Llama/Qwen2), forward and backward.
// Row statistics are accumulated in double. The weight/bias gradients are sums over rows: rows are
// cut into fixed chunks (a size that depends on N only, never on the thread count); each chunk
// writes its partial sums into its own slot of the scratch, and the slots are then added in chunk
// order, column by column. So dweight and dbias are bit-identical whatever the thread count.
internal sealed unsafe partial class CpuAccelerator
{
    /// <summary>Fewest rows in a gradient chunk.</summary>
    private const int NormMinChunkRows = 32;

    /// <summary>Most chunks (bounds the scratch at this many partial rows).</summary>
    private const int NormMaxChunks = 256;

    /// <summary>Columns per item when the per-chunk partial sums are reduced.</summary>
    private const long NormReduceColumns = 256;

    protected override void LayerNormForwardCore(Tensor output, Tensor mean, Tensor rstd, Tensor x, Tensor weight, Tensor bias,
        int n, int c, float eps) =>
        RunChunks(n, RowsPerItem(c), new LayerNormForwardKernel
        {
            Out = F(output), Mean = F(mean), Rstd = F(rstd), X = F(x), Weight = F(weight), Bias = F(bias), C = c, Eps = eps,
        });

    protected override void LayerNormBackwardCore(Tensor dx, Tensor dweight, Tensor dbias, Tensor dout, Tensor x, Tensor weight,
        Tensor mean, Tensor rstd, int n, int c)
    {
        int chunkRows = NormChunkRows(n);
        int chunks = (n + chunkRows - 1) / chunkRows;
        int stride = dbias.IsEmpty ? c : 2 * c; // partial row: [dweight C | dbias C]
        float* partial = (float*)ReductionScratch((long)chunks * stride * sizeof(float)); // [chunks, stride]
        RunChunks(n, chunkRows, new LayerNormBackwardKernel
        {
            Dx = F(dx), Partial = partial, Dout = F(dout), X = F(x), Weight = F(weight), Mean = F(mean), Rstd = F(rstd),
            C = c, ChunkRows = chunkRows, HasBias = !dbias.IsEmpty,
        });
        RunChunks(stride, NormReduceColumns, new ColumnReduceKernel
        {
            Partial = partial, Chunks = chunks, Stride = stride, Split = c, First = F(dweight), Second = F(dbias),
        });
    }

    protected override void RmsNormForwardCore(Tensor output, Tensor rstd, Tensor x, Tensor weight, int n, int c, float eps) =>
        RunChunks(n, RowsPerItem(c), new RmsNormForwardKernel
        {
            Out = F(output), Rstd = F(rstd), X = F(x), Weight = F(weight), C = c, Eps = eps,
        });

    protected override void RmsNormBackwardCore(Tensor dx, Tensor dweight, Tensor dout, Tensor x, Tensor weight, Tensor rstd, int n, int c)
    {
        int chunkRows = NormChunkRows(n);
        int chunks = (n + chunkRows - 1) / chunkRows;
        float* partial = (float*)ReductionScratch((long)chunks * c * sizeof(float)); // [chunks, C]
        RunChunks(n, chunkRows, new RmsNormBackwardKernel
        {
            Dx = F(dx), Partial = partial, Dout = F(dout), X = F(x), Weight = F(weight), Rstd = F(rstd), C = c, ChunkRows = chunkRows,
        });
        RunChunks(c, NormReduceColumns, new ColumnReduceKernel
        {
            Partial = partial, Chunks = chunks, Stride = c, Split = c, First = F(dweight), Second = null,
        });
    }

    /// <summary>Rows per gradient chunk: a function of N alone.</summary>
    private static int NormChunkRows(int n) => Math.Max(NormMinChunkRows, (n + NormMaxChunks - 1) / NormMaxChunks);
}

/// <summary>Row reductions in double and the shared normalisation loops.</summary>
internal static unsafe class NormMath
{
    /// <summary>Sum of x [c], accumulated in double in the <see cref="LaneOrder"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Sum(float* x, int c) => SumSquaredDeviation(x, c, 0, square: false);

    /// <summary>Sum of (x - mean)^2 over x [c] (with mean = 0: the sum of squares), in double in the <see cref="LaneOrder"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double SumSquaredDeviation(float* x, int c, double mean) => SumSquaredDeviation(x, c, mean, square: true);

    /// <summary>Sum of x or of (x - mean)^2 over x [c]: 16 double lanes, then the tail in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double SumSquaredDeviation(float* x, int c, double mean, bool square)
    {
        int j = 0;
        double sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<double> m = Vector512.Create(mean);
            Vector512<double> a0 = Vector512<double>.Zero, a1 = Vector512<double>.Zero;
            for (; j <= c - 16; j += 16)
            {
                (Vector512<double> lo, Vector512<double> hi) = Vector512.Widen(Vector512.Load(x + j));
                if (square)
                {
                    lo -= m;
                    hi -= m;
                    a0 = Vector512.FusedMultiplyAdd(lo, lo, a0);
                    a1 = Vector512.FusedMultiplyAdd(hi, hi, a1);
                }
                else
                {
                    a0 += lo;
                    a1 += hi;
                }
            }

            sum = LaneOrder.Sum(a0, a1);
        }
        else
        {
            Vector256<double> m = Vector256.Create(mean);
            Vector256<double> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; j <= c - 16; j += 16)
            {
                (Vector256<double> q0, Vector256<double> q1) = Vector256.Widen(Vector256.Load(x + j));
                (Vector256<double> q2, Vector256<double> q3) = Vector256.Widen(Vector256.Load(x + j + 8));
                if (square)
                {
                    q0 -= m;
                    q1 -= m;
                    q2 -= m;
                    q3 -= m;
                    a0 = Vector256.FusedMultiplyAdd(q0, q0, a0);
                    a1 = Vector256.FusedMultiplyAdd(q1, q1, a1);
                    a2 = Vector256.FusedMultiplyAdd(q2, q2, a2);
                    a3 = Vector256.FusedMultiplyAdd(q3, q3, a3);
                }
                else
                {
                    a0 += q0;
                    a1 += q1;
                    a2 += q2;
                    a3 += q3;
                }
            }

            sum = LaneOrder.Sum(a0, a1, a2, a3);
        }

        for (; j < c; j++)
        {
            double d = x[j] - mean;
            sum = square ? Math.FusedMultiplyAdd(d, d, sum) : sum + x[j];
        }

        return sum;
    }

    /// <summary>Widens a float vector and adds both halves to a double accumulator pair.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Accumulate(Vector512<float> v, ref Vector512<double> a0, ref Vector512<double> a1)
    {
        (Vector512<double> lo, Vector512<double> hi) = Vector512.Widen(v);
        a0 += lo;
        a1 += hi;
    }

    /// <inheritdoc cref="Accumulate(Vector512{float}, ref Vector512{double}, ref Vector512{double})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Accumulate(Vector256<float> v, ref Vector256<double> a0, ref Vector256<double> a1)
    {
        (Vector256<double> lo, Vector256<double> hi) = Vector256.Widen(v);
        a0 += lo;
        a1 += hi;
    }

    /// <summary>Sets the columns [0, c) of <paramref name="p"/> to zero.</summary>
    public static void Clear(float* p, int c) => new Span<float>(p, c).Clear();
}

/// <summary>
/// LayerNorm forward over rows: mean = sum(x)/C, var = sum((x - mean)^2)/C (biased, two passes in
/// double), rstd = 1/sqrt(var + eps), out = (x - mean) * rstd * w + b.
/// </summary>
internal unsafe struct LayerNormForwardKernel : IChunkKernel
{
    public float* Out;    // [N, C]
    public float* Mean;   // [N]
    public float* Rstd;   // [N]
    public float* X;      // [N, C]
    public float* Weight; // [C]
    public float* Bias;   // [C] or null
    public int C;
    public float Eps;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        int c = C;
        float* w = Weight, b = Bias;
        for (long r = start; r < start + count; r++)
        {
            float* x = X + r * c, o = Out + r * c;
            double mean = NormMath.Sum(x, c) / c;
            double variance = NormMath.SumSquaredDeviation(x, c, mean) / c;
            float m = (float)mean;
            float rs = (float)(1.0 / Math.Sqrt(variance + Eps));
            Mean[r] = m;
            Rstd[r] = rs;
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> mv = Vector512.Create(m), rv = Vector512.Create(rs);
                for (; j <= c - 16; j += 16)
                {
                    Vector512<float> xh = (Vector512.Load(x + j) - mv) * rv;
                    Vector512<float> shift = b == null ? Vector512<float>.Zero : Vector512.Load(b + j);
                    Vector512.FusedMultiplyAdd(xh, Vector512.Load(w + j), shift).Store(o + j);
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> mv = Vector256.Create(m), rv = Vector256.Create(rs);
                for (; j <= c - 8; j += 8)
                {
                    Vector256<float> xh = (Vector256.Load(x + j) - mv) * rv;
                    Vector256<float> shift = b == null ? Vector256<float>.Zero : Vector256.Load(b + j);
                    Vector256.FusedMultiplyAdd(xh, Vector256.Load(w + j), shift).Store(o + j);
                }
            }

            for (; j < c; j++)
            {
                float xh = (x[j] - m) * rs;
                o[j] = MathF.FusedMultiplyAdd(xh, w[j], b == null ? 0f : b[j]);
            }
        }
    }
}

/// <summary>
/// LayerNorm backward over one chunk of rows. With xhat = (x - mean) rstd and dnorm = dout * w:
/// dx += rstd (dnorm - mean(dnorm) - xhat mean(dnorm xhat)); the chunk's partial sums of
/// dout * xhat (dweight) and dout (dbias) go to its own scratch row.
/// </summary>
internal unsafe struct LayerNormBackwardKernel : IChunkKernel
{
    public float* Dx;      // [N, C] accumulated
    public float* Partial; // [chunks, C or 2C] per-chunk partial dweight | dbias
    public float* Dout;    // [N, C]
    public float* X;       // [N, C]
    public float* Weight;  // [C]
    public float* Mean;    // [N]
    public float* Rstd;    // [N]
    public int C;
    public int ChunkRows;
    public bool HasBias;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        int c = C;
        float* w = Weight;
        float* pw = Partial + start / ChunkRows * (HasBias ? 2L * c : c);
        float* pb = HasBias ? pw + c : null;
        NormMath.Clear(pw, HasBias ? 2 * c : c);
        for (long r = start; r < start + count; r++)
        {
            float* x = X + r * c, dout = Dout + r * c, dx = Dx + r * c;
            float m = Mean[r], rs = Rstd[r];

            // Pass 1: row sums of dnorm and dnorm * xhat (double); partial dweight, dbias.
            double sumDn = 0, sumDnXh = 0;
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> mv = Vector512.Create(m), rv = Vector512.Create(rs);
                Vector512<double> s0 = default, s1 = default, t0 = default, t1 = default;
                for (; j <= c - 16; j += 16)
                {
                    Vector512<float> g = Vector512.Load(dout + j);
                    Vector512<float> xh = (Vector512.Load(x + j) - mv) * rv;
                    Vector512<float> dn = g * Vector512.Load(w + j);
                    NormMath.Accumulate(dn, ref s0, ref s1);
                    NormMath.Accumulate(dn * xh, ref t0, ref t1);
                    Vector512.FusedMultiplyAdd(g, xh, Vector512.Load(pw + j)).Store(pw + j);
                    if (pb != null)
                    {
                        (Vector512.Load(pb + j) + g).Store(pb + j);
                    }
                }

                sumDn = LaneOrder.Sum(s0, s1);
                sumDnXh = LaneOrder.Sum(t0, t1);
            }
            else
            {
                // Two halves per step: the 16 double lanes of the Vector512 form (LaneOrder).
                Vector256<float> mv = Vector256.Create(m), rv = Vector256.Create(rs);
                Vector256<double> s0 = default, s1 = default, s2 = default, s3 = default;
                Vector256<double> t0 = default, t1 = default, t2 = default, t3 = default;
                for (; j <= c - 16; j += 16)
                {
                    for (int half = 0; half < 16; half += 8)
                    {
                        int jh = j + half;
                        Vector256<float> g = Vector256.Load(dout + jh);
                        Vector256<float> xh = (Vector256.Load(x + jh) - mv) * rv;
                        Vector256<float> dn = g * Vector256.Load(w + jh);
                        if (half == 0)
                        {
                            NormMath.Accumulate(dn, ref s0, ref s1);
                            NormMath.Accumulate(dn * xh, ref t0, ref t1);
                        }
                        else
                        {
                            NormMath.Accumulate(dn, ref s2, ref s3);
                            NormMath.Accumulate(dn * xh, ref t2, ref t3);
                        }

                        Vector256.FusedMultiplyAdd(g, xh, Vector256.Load(pw + jh)).Store(pw + jh);
                        if (pb != null)
                        {
                            (Vector256.Load(pb + jh) + g).Store(pb + jh);
                        }
                    }
                }

                sumDn = LaneOrder.Sum(s0, s1, s2, s3);
                sumDnXh = LaneOrder.Sum(t0, t1, t2, t3);
            }

            for (; j < c; j++)
            {
                float g = dout[j];
                float xh = (x[j] - m) * rs;
                float dn = g * w[j];
                sumDn += dn;
                sumDnXh += dn * xh;
                pw[j] = MathF.FusedMultiplyAdd(g, xh, pw[j]);
                if (pb != null)
                {
                    pb[j] += g;
                }
            }

            // Pass 2: dx += rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)).
            float m1 = (float)(sumDn / c), m2 = (float)(sumDnXh / c);
            j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> mv = Vector512.Create(m), rv = Vector512.Create(rs);
                Vector512<float> m1v = Vector512.Create(m1), m2v = Vector512.Create(m2);
                for (; j <= c - 16; j += 16)
                {
                    Vector512<float> xh = (Vector512.Load(x + j) - mv) * rv;
                    Vector512<float> dn = Vector512.Load(dout + j) * Vector512.Load(w + j);
                    Vector512<float> t = dn - m1v - xh * m2v;
                    Vector512.FusedMultiplyAdd(rv, t, Vector512.Load(dx + j)).Store(dx + j);
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> mv = Vector256.Create(m), rv = Vector256.Create(rs);
                Vector256<float> m1v = Vector256.Create(m1), m2v = Vector256.Create(m2);
                for (; j <= c - 8; j += 8)
                {
                    Vector256<float> xh = (Vector256.Load(x + j) - mv) * rv;
                    Vector256<float> dn = Vector256.Load(dout + j) * Vector256.Load(w + j);
                    Vector256<float> t = dn - m1v - xh * m2v;
                    Vector256.FusedMultiplyAdd(rv, t, Vector256.Load(dx + j)).Store(dx + j);
                }
            }

            for (; j < c; j++)
            {
                float xh = (x[j] - m) * rs;
                float dn = dout[j] * w[j];
                float t = dn - m1 - xh * m2;
                dx[j] = MathF.FusedMultiplyAdd(rs, t, dx[j]);
            }
        }
    }
}

/// <summary>RMSNorm forward over rows: rstd = 1/sqrt(mean(x^2) + eps) (double), out = (x * rstd) * w.</summary>
internal unsafe struct RmsNormForwardKernel : IChunkKernel
{
    public float* Out;    // [N, C]
    public float* Rstd;   // [N]
    public float* X;      // [N, C]
    public float* Weight; // [C]
    public int C;
    public float Eps;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        int c = C;
        float* w = Weight;
        for (long r = start; r < start + count; r++)
        {
            float* x = X + r * c, o = Out + r * c;
            double meanSquare = NormMath.SumSquaredDeviation(x, c, 0) / c;
            float rs = (float)(1.0 / Math.Sqrt(meanSquare + Eps));
            Rstd[r] = rs;
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> rv = Vector512.Create(rs);
                for (; j <= c - 16; j += 16)
                {
                    (Vector512.Load(x + j) * rv * Vector512.Load(w + j)).Store(o + j);
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> rv = Vector256.Create(rs);
                for (; j <= c - 8; j += 8)
                {
                    (Vector256.Load(x + j) * rv * Vector256.Load(w + j)).Store(o + j);
                }
            }

            for (; j < c; j++)
            {
                o[j] = x[j] * rs * w[j];
            }
        }
    }
}

/// <summary>
/// RMSNorm backward over one chunk of rows. With xhat = x rstd and dnorm = dout * w:
/// dx += rstd (dnorm - xhat mean(dnorm xhat)); the chunk's partial dweight = sum dout * xhat goes to
/// its own scratch row.
/// </summary>
internal unsafe struct RmsNormBackwardKernel : IChunkKernel
{
    public float* Dx;      // [N, C] accumulated
    public float* Partial; // [chunks, C]
    public float* Dout;    // [N, C]
    public float* X;       // [N, C]
    public float* Weight;  // [C]
    public float* Rstd;    // [N]
    public int C;
    public int ChunkRows;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        int c = C;
        float* w = Weight;
        float* pw = Partial + start / ChunkRows * c;
        NormMath.Clear(pw, c);
        for (long r = start; r < start + count; r++)
        {
            float* x = X + r * c, dout = Dout + r * c, dx = Dx + r * c;
            float rs = Rstd[r];
            double sumDnXh = 0;
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> rv = Vector512.Create(rs);
                Vector512<double> t0 = default, t1 = default;
                for (; j <= c - 16; j += 16)
                {
                    Vector512<float> g = Vector512.Load(dout + j);
                    Vector512<float> xh = Vector512.Load(x + j) * rv;
                    NormMath.Accumulate(g * Vector512.Load(w + j) * xh, ref t0, ref t1);
                    Vector512.FusedMultiplyAdd(g, xh, Vector512.Load(pw + j)).Store(pw + j);
                }

                sumDnXh = LaneOrder.Sum(t0, t1);
            }
            else
            {
                // Two halves per step: the 16 double lanes of the Vector512 form (LaneOrder).
                Vector256<float> rv = Vector256.Create(rs);
                Vector256<double> t0 = default, t1 = default, t2 = default, t3 = default;
                for (; j <= c - 16; j += 16)
                {
                    Vector256<float> g = Vector256.Load(dout + j), g8 = Vector256.Load(dout + j + 8);
                    Vector256<float> xh = Vector256.Load(x + j) * rv, xh8 = Vector256.Load(x + j + 8) * rv;
                    NormMath.Accumulate(g * Vector256.Load(w + j) * xh, ref t0, ref t1);
                    NormMath.Accumulate(g8 * Vector256.Load(w + j + 8) * xh8, ref t2, ref t3);
                    Vector256.FusedMultiplyAdd(g, xh, Vector256.Load(pw + j)).Store(pw + j);
                    Vector256.FusedMultiplyAdd(g8, xh8, Vector256.Load(pw + j + 8)).Store(pw + j + 8);
                }

                sumDnXh = LaneOrder.Sum(t0, t1, t2, t3);
            }

            for (; j < c; j++)
            {
                float g = dout[j];
                float xh = x[j] * rs;
                sumDnXh += g * w[j] * xh;
                pw[j] = MathF.FusedMultiplyAdd(g, xh, pw[j]);
            }

            float m2 = (float)(sumDnXh / c);
            j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> rv = Vector512.Create(rs), m2v = Vector512.Create(m2);
                for (; j <= c - 16; j += 16)
                {
                    Vector512<float> xh = Vector512.Load(x + j) * rv;
                    Vector512<float> t = Vector512.Load(dout + j) * Vector512.Load(w + j) - xh * m2v;
                    Vector512.FusedMultiplyAdd(rv, t, Vector512.Load(dx + j)).Store(dx + j);
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> rv = Vector256.Create(rs), m2v = Vector256.Create(m2);
                for (; j <= c - 8; j += 8)
                {
                    Vector256<float> xh = Vector256.Load(x + j) * rv;
                    Vector256<float> t = Vector256.Load(dout + j) * Vector256.Load(w + j) - xh * m2v;
                    Vector256.FusedMultiplyAdd(rv, t, Vector256.Load(dx + j)).Store(dx + j);
                }
            }

            for (; j < c; j++)
            {
                float xh = x[j] * rs;
                float t = dout[j] * w[j] - xh * m2;
                dx[j] = MathF.FusedMultiplyAdd(rs, t, dx[j]);
            }
        }
    }
}

/// <summary>
/// Adds per-chunk partial sums into the gradients in chunk order: for column j of the partial rows
/// [chunks, Stride], <c>dst[j] += sum over k = 0..chunks-1 of Partial[k, j]</c>, where columns below
/// <see cref="Split"/> go to <see cref="First"/> and the rest to <see cref="Second"/>.
/// </summary>
internal unsafe struct ColumnReduceKernel : IChunkKernel
{
    public float* Partial; // [Chunks, Stride]
    public int Chunks;
    public int Stride;
    public int Split;
    public float* First;   // [Split]
    public float* Second;  // [Stride - Split] or null

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        long end = start + count;
        if (start < Split)
        {
            Reduce(First + start, Partial + start, (int)(Math.Min(end, Split) - start));
        }

        if (end > Split)
        {
            long from = Math.Max(start, Split);
            Reduce(Second + (from - Split), Partial + from, (int)(end - from));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private readonly void Reduce(float* dst, float* src, int width)
    {
        int chunks = Chunks;
        long stride = Stride;
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; j <= width - 16; j += 16)
            {
                Vector512<float> acc = Vector512<float>.Zero;
                for (int k = 0; k < chunks; k++)
                {
                    acc += Vector512.Load(src + k * stride + j);
                }

                (Vector512.Load(dst + j) + acc).Store(dst + j);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; j <= width - 8; j += 8)
            {
                Vector256<float> acc = Vector256<float>.Zero;
                for (int k = 0; k < chunks; k++)
                {
                    acc += Vector256.Load(src + k * stride + j);
                }

                (Vector256.Load(dst + j) + acc).Store(dst + j);
            }
        }

        for (; j < width; j++)
        {
            float acc = 0;
            for (int k = 0; k < chunks; k++)
            {
                acc += src[k * stride + j];
            }

            dst[j] += acc;
        }
    }
}

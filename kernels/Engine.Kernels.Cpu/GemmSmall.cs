using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Kernels.Cpu;

/// <summary>
/// The small-m transB path (decode: a few rows against a big weight matrix W[n, k]). Packing B
/// would cost as much as the product itself, so each output is a dot product of a row of A with a
/// row of B, both contiguous in k, streamed straight from memory; parallel over chunks of columns.
/// </summary>
internal static unsafe partial class CpuGemm
{
    /// <summary>
    /// C[m, n] = alpha * A[m, k] B[n, k]^T + beta * C + bias, m &lt;= <see cref="SmallRows"/>.
    /// When transA (A stored [k, m]) A is first copied to [m, k] in the caller's scratch.
    /// </summary>
    private static void MultiplySmall(CpuThreadPool pool, float* c, float* a, float* b, int m, int n, int k,
        bool transA, float alpha, float beta, float* bias, GemmIsa isa)
    {
        if (transA)
        {
            // at[m, k] = a[k, m]^T
            float* at = GemmScratch.Current.Operand((long)m * k);
            for (int p = 0; p < k; p++)
            {
                float* src = a + (long)p * m;
                for (int i = 0; i < m; i++)
                {
                    at[(long)i * k + p] = src[i];
                }
            }

            a = at;
        }

        // Work items of a few groups of 4 columns: enough of them to balance the threads.
        int chunk = Math.Clamp((32 * 1024 / k) & ~3, 8, 64);
        var work = new SmallWork
        {
            C = c, A = a, B = b, M = m, N = n, K = k, Chunk = chunk, Alpha = alpha, Beta = beta, Bias = bias, Isa = isa,
            Prefetch = Sse.IsSupported && (long)n * k > StreamedWeights,
        };
        pool.For((n + chunk - 1) / chunk, ref work);
    }

    /// <summary>One chunk of output columns of the small-m path, for all rows.</summary>
    private struct SmallWork : IParallelWork
    {
        public float* C;
        public float* A;
        public float* B;
        public int M;
        public int N;
        public int K;
        public int Chunk;
        public float Alpha;
        public float Beta;
        public float* Bias;
        public GemmIsa Isa;
        public bool Prefetch;

        public readonly void Execute(int item, int worker)
        {
            int j0 = item * Chunk;
            int j1 = Math.Min(N, j0 + Chunk);
            float* r = stackalloc float[16];
            int j = j0;
            // Four rows of B at a time (4 x k floats, kept in cache) against every row of A, so each
            // weight is fetched from memory once.
            for (; j + 4 <= j1; j += 4)
            {
                float* bj = B + (long)j * K;
                float* bias = Bias == null ? null : Bias + j;
                int i = 0;
                long span = 4L * K, groups = M / 4;
                for (; i + 4 <= M; i += 4)
                {
                    if (Prefetch && j + 8 <= N)
                    {
                        // A share of the next four weight rows, so that they stream in from memory
                        // while these are used (the first row group alone would wait for them).
                        long g = i / 4;
                        float* next = bj + span;
                        for (long t = (span * g / groups) & ~15L, end = span * (g + 1) / groups; t < end; t += 16)
                        {
                            Sse.Prefetch1(next + t);
                        }
                    }

                    Dot4x4(A + (long)i * K, bj, K, r, Isa);
                    for (int ii = 0; ii < 4; ii++)
                    {
                        Store4(C + (long)(i + ii) * N + j, r + ii * 4, Alpha, Beta, bias);
                    }
                }

                for (; i < M; i++)
                {
                    Dot1x4(A + (long)i * K, bj, K, r, Isa);
                    Store4(C + (long)i * N + j, r, Alpha, Beta, bias);
                }
            }

            for (; j < j1; j++)
            {
                for (int i = 0; i < M; i++)
                {
                    Store1(C + (long)i * N + j, Dot1(A + (long)i * K, B + (long)j * K, K, Isa),
                        Alpha, Beta, Bias == null ? null : Bias + j);
                }
            }
        }
    }

    /// <summary>Weights (floats of B) past which the small-m path prefetches them: more than the caches hold.</summary>
    private const long StreamedWeights = 4L << 20;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store1(float* c, float r, float alpha, float beta, float* bias)
    {
        float v = beta == 0 ? r * alpha : MathF.FusedMultiplyAdd(r, alpha, *c * beta);
        *c = bias == null ? v : v + *bias;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store4(float* c, float* r, float alpha, float beta, float* bias)
    {
        Store1(c, r[0], alpha, beta, bias);
        Store1(c + 1, r[1], alpha, beta, bias == null ? null : bias + 1);
        Store1(c + 2, r[2], alpha, beta, bias == null ? null : bias + 2);
        Store1(c + 3, r[3], alpha, beta, bias == null ? null : bias + 3);
    }

    // Every dot product below has the same arithmetic whatever kernel computes it: lane-wise FMA
    // chains over the full vectors of k in order, the vector's Sum, then an FMA chain over the tail.

    /// <summary>r[4 x 4] = A[4 rows, k] . B[4 rows, k] (row stride k for both).</summary>
    private static void Dot4x4(float* a, float* b, int k, float* r, GemmIsa isa)
    {
        if (isa == GemmIsa.Vector512)
        {
            Dot4x4V512(a, b, k, r);
        }
        else if (isa == GemmIsa.Vector256)
        {
            Dot4x4V256(a, b, k, r);
        }
        else
        {
            for (int ii = 0; ii < 4; ii++)
            {
                for (int jj = 0; jj < 4; jj++)
                {
                    r[ii * 4 + jj] = Dot1(a + (long)ii * k, b + (long)jj * k, k, isa);
                }
            }
        }
    }

    /// <summary>r[4] = a[k] . B[4 rows, k].</summary>
    private static void Dot1x4(float* a, float* b, int k, float* r, GemmIsa isa)
    {
        if (isa == GemmIsa.Vector512)
        {
            Dot1x4V512(a, b, k, r);
        }
        else
        {
            for (int jj = 0; jj < 4; jj++)
            {
                r[jj] = Dot1(a, b + (long)jj * k, k, isa);
            }
        }
    }

    /// <summary>One dot product of length k.</summary>
    private static float Dot1(float* a, float* b, int k, GemmIsa isa)
    {
        int p = 0;
        float s = 0;
        if (isa == GemmIsa.Vector512)
        {
            Vector512<float> acc = default;
            for (; p + 16 <= k; p += 16)
            {
                acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + p), Vector512.Load(b + p), acc);
            }

            s = Vector512.Sum(acc);
        }
        else if (isa == GemmIsa.Vector256)
        {
            Vector256<float> acc = default;
            for (; p + 8 <= k; p += 8)
            {
                acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + p), Vector256.Load(b + p), acc);
            }

            s = Vector256.Sum(acc);
        }
        else
        {
            for (; p < k; p++)
            {
                s += a[p] * b[p];
            }

            return s;
        }

        return Tail(a, b, p, k, s);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail(float* a, float* b, int p, int k, float s)
    {
        for (; p < k; p++)
        {
            s = MathF.FusedMultiplyAdd(a[p], b[p], s);
        }

        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4x4V512(float* a, float* b, int k, float* r)
    {
        float* a1 = a + k, a2 = a1 + k, a3 = a2 + k;
        float* b1 = b + k, b2 = b1 + k, b3 = b2 + k;
        Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default;
        Vector512<float> s10 = default, s11 = default, s12 = default, s13 = default;
        Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default;
        Vector512<float> s30 = default, s31 = default, s32 = default, s33 = default;
        int p = 0;
        for (; p + 16 <= k; p += 16)
        {
            Vector512<float> y0 = Vector512.Load(b + p);
            Vector512<float> y1 = Vector512.Load(b1 + p);
            Vector512<float> y2 = Vector512.Load(b2 + p);
            Vector512<float> y3 = Vector512.Load(b3 + p);
            Vector512<float> x = Vector512.Load(a + p);
            s00 = Vector512.FusedMultiplyAdd(x, y0, s00);
            s01 = Vector512.FusedMultiplyAdd(x, y1, s01);
            s02 = Vector512.FusedMultiplyAdd(x, y2, s02);
            s03 = Vector512.FusedMultiplyAdd(x, y3, s03);
            x = Vector512.Load(a1 + p);
            s10 = Vector512.FusedMultiplyAdd(x, y0, s10);
            s11 = Vector512.FusedMultiplyAdd(x, y1, s11);
            s12 = Vector512.FusedMultiplyAdd(x, y2, s12);
            s13 = Vector512.FusedMultiplyAdd(x, y3, s13);
            x = Vector512.Load(a2 + p);
            s20 = Vector512.FusedMultiplyAdd(x, y0, s20);
            s21 = Vector512.FusedMultiplyAdd(x, y1, s21);
            s22 = Vector512.FusedMultiplyAdd(x, y2, s22);
            s23 = Vector512.FusedMultiplyAdd(x, y3, s23);
            x = Vector512.Load(a3 + p);
            s30 = Vector512.FusedMultiplyAdd(x, y0, s30);
            s31 = Vector512.FusedMultiplyAdd(x, y1, s31);
            s32 = Vector512.FusedMultiplyAdd(x, y2, s32);
            s33 = Vector512.FusedMultiplyAdd(x, y3, s33);
        }

        r[0] = Tail(a, b, p, k, Vector512.Sum(s00));
        r[1] = Tail(a, b1, p, k, Vector512.Sum(s01));
        r[2] = Tail(a, b2, p, k, Vector512.Sum(s02));
        r[3] = Tail(a, b3, p, k, Vector512.Sum(s03));
        r[4] = Tail(a1, b, p, k, Vector512.Sum(s10));
        r[5] = Tail(a1, b1, p, k, Vector512.Sum(s11));
        r[6] = Tail(a1, b2, p, k, Vector512.Sum(s12));
        r[7] = Tail(a1, b3, p, k, Vector512.Sum(s13));
        r[8] = Tail(a2, b, p, k, Vector512.Sum(s20));
        r[9] = Tail(a2, b1, p, k, Vector512.Sum(s21));
        r[10] = Tail(a2, b2, p, k, Vector512.Sum(s22));
        r[11] = Tail(a2, b3, p, k, Vector512.Sum(s23));
        r[12] = Tail(a3, b, p, k, Vector512.Sum(s30));
        r[13] = Tail(a3, b1, p, k, Vector512.Sum(s31));
        r[14] = Tail(a3, b2, p, k, Vector512.Sum(s32));
        r[15] = Tail(a3, b3, p, k, Vector512.Sum(s33));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot1x4V512(float* a, float* b, int k, float* r)
    {
        float* b1 = b + k, b2 = b1 + k, b3 = b2 + k;
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        int p = 0;
        for (; p + 16 <= k; p += 16)
        {
            Vector512<float> x = Vector512.Load(a + p);
            s0 = Vector512.FusedMultiplyAdd(x, Vector512.Load(b + p), s0);
            s1 = Vector512.FusedMultiplyAdd(x, Vector512.Load(b1 + p), s1);
            s2 = Vector512.FusedMultiplyAdd(x, Vector512.Load(b2 + p), s2);
            s3 = Vector512.FusedMultiplyAdd(x, Vector512.Load(b3 + p), s3);
        }

        r[0] = Tail(a, b, p, k, Vector512.Sum(s0));
        r[1] = Tail(a, b1, p, k, Vector512.Sum(s1));
        r[2] = Tail(a, b2, p, k, Vector512.Sum(s2));
        r[3] = Tail(a, b3, p, k, Vector512.Sum(s3));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4x4V256(float* a, float* b, int k, float* r)
    {
        float* a1 = a + k, a2 = a1 + k, a3 = a2 + k;
        float* b1 = b + k, b2 = b1 + k, b3 = b2 + k;
        Vector256<float> s00 = default, s01 = default, s02 = default, s03 = default;
        Vector256<float> s10 = default, s11 = default, s12 = default, s13 = default;
        Vector256<float> s20 = default, s21 = default, s22 = default, s23 = default;
        Vector256<float> s30 = default, s31 = default, s32 = default, s33 = default;
        int p = 0;
        for (; p + 8 <= k; p += 8)
        {
            Vector256<float> y0 = Vector256.Load(b + p);
            Vector256<float> y1 = Vector256.Load(b1 + p);
            Vector256<float> y2 = Vector256.Load(b2 + p);
            Vector256<float> y3 = Vector256.Load(b3 + p);
            Vector256<float> x = Vector256.Load(a + p);
            s00 = Vector256.FusedMultiplyAdd(x, y0, s00);
            s01 = Vector256.FusedMultiplyAdd(x, y1, s01);
            s02 = Vector256.FusedMultiplyAdd(x, y2, s02);
            s03 = Vector256.FusedMultiplyAdd(x, y3, s03);
            x = Vector256.Load(a1 + p);
            s10 = Vector256.FusedMultiplyAdd(x, y0, s10);
            s11 = Vector256.FusedMultiplyAdd(x, y1, s11);
            s12 = Vector256.FusedMultiplyAdd(x, y2, s12);
            s13 = Vector256.FusedMultiplyAdd(x, y3, s13);
            x = Vector256.Load(a2 + p);
            s20 = Vector256.FusedMultiplyAdd(x, y0, s20);
            s21 = Vector256.FusedMultiplyAdd(x, y1, s21);
            s22 = Vector256.FusedMultiplyAdd(x, y2, s22);
            s23 = Vector256.FusedMultiplyAdd(x, y3, s23);
            x = Vector256.Load(a3 + p);
            s30 = Vector256.FusedMultiplyAdd(x, y0, s30);
            s31 = Vector256.FusedMultiplyAdd(x, y1, s31);
            s32 = Vector256.FusedMultiplyAdd(x, y2, s32);
            s33 = Vector256.FusedMultiplyAdd(x, y3, s33);
        }

        r[0] = Tail(a, b, p, k, Vector256.Sum(s00));
        r[1] = Tail(a, b1, p, k, Vector256.Sum(s01));
        r[2] = Tail(a, b2, p, k, Vector256.Sum(s02));
        r[3] = Tail(a, b3, p, k, Vector256.Sum(s03));
        r[4] = Tail(a1, b, p, k, Vector256.Sum(s10));
        r[5] = Tail(a1, b1, p, k, Vector256.Sum(s11));
        r[6] = Tail(a1, b2, p, k, Vector256.Sum(s12));
        r[7] = Tail(a1, b3, p, k, Vector256.Sum(s13));
        r[8] = Tail(a2, b, p, k, Vector256.Sum(s20));
        r[9] = Tail(a2, b1, p, k, Vector256.Sum(s21));
        r[10] = Tail(a2, b2, p, k, Vector256.Sum(s22));
        r[11] = Tail(a2, b3, p, k, Vector256.Sum(s23));
        r[12] = Tail(a3, b, p, k, Vector256.Sum(s30));
        r[13] = Tail(a3, b1, p, k, Vector256.Sum(s31));
        r[14] = Tail(a3, b2, p, k, Vector256.Sum(s32));
        r[15] = Tail(a3, b3, p, k, Vector256.Sum(s33));
    }
}

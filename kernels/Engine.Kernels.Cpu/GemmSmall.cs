using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Kernels.Cpu;

/// <summary>
/// The small-m path (decode: a few rows against a big weight matrix, any transposes). Packing B
/// would cost as much as the product itself, so B is read in place, once, and the rows of A go
/// into the vector lanes; yet every element gets exactly the packed path's arithmetic.
/// </summary>
/// <remarks>
/// <para>
/// The canonical order, shared by every path and kernel set: element (i, j) is, for each k block
/// of <see cref="KSplit"/> in order, one FMA chain <c>acc = fma(A(i, p), B(p, j), acc)</c> from
/// zero over the block's p in order, then written back as <c>C = alpha * acc + beta * C + bias</c>
/// (one FMA, then the bias; beta = 1 and no bias for later blocks), as <see cref="WriteTile"/>
/// does. fma is symmetric in its two factors, and a vector FMA is lane by lane the scalar one, so
/// how the lanes are filled does not matter: a row of C depends on its row of A only, whatever m,
/// the row's position, the columns beside it, the transposes or the thread count.
/// </para>
/// <para>
/// Rows across (m &gt;= 3, or not transB): op(A) is copied transposed to <c>at[k][lda]</c> (zero
/// padded), so one vector load gives one k step of 16 (Vector512), 8 or 4 rows. Each element of B
/// is broadcast from where it lies (an embedded-broadcast FMA operand) into the vector of rows; a
/// group of 8 columns keeps 8 accumulators. Work items are runs of columns (all rows, all k);
/// each group of 8 columns walks the k blocks and, for each, every group of rows, so its block of
/// B comes from memory once and is reused from L1 by the other row groups.
/// </para>
/// <para>
/// Columns across (m &lt;= 2 and transB, where rows across would leave most lanes idle): 32 weight
/// rows at a time are transposed in registers, 8 x 8 blocks, and multiplied by broadcast elements
/// of A, as the packed micro-kernel does but without writing B anywhere. This is the batch-1
/// decode step, which streams every weight from memory once: each thread takes one contiguous
/// run of rows (so its reads form one stream), and every row of the panel is prefetched
/// <see cref="PrefetchAhead"/> floats ahead of where it is read (the panel's 32 rows are 32
/// interleaved streams, more than the hardware prefetcher follows well): on the 2-core Zen 5 the
/// 124M step's weights went from ~29 to ~34 GB/s with both, the head from ~25 to ~36 GB/s (the
/// machine's read bandwidth, <c>engine bench-bandwidth</c>, varies between ~47 and ~68 GB/s).
/// </para>
/// </remarks>
internal static unsafe partial class CpuGemm
{
    /// <summary>Columns of B handled by one micro-kernel call of the small-m path.</summary>
    private const int SmallCols = 8;

    /// <summary>Rows at or below which a transB product transposes B in registers (columns across).</summary>
    private const int TransposedRows = 2;

    /// <summary>Weight rows (columns of C) of one transposed panel.</summary>
    private const int TPanel = 32;

    /// <summary>How far ahead (floats of a weight row: 8 cache lines) the transposed kernel prefetches each row into L2.</summary>
    private const int PrefetchAhead = 128;

    /// <summary>
    /// The k blocks of the canonical order for one kernel set: <paramref name="blocks"/> equal blocks
    /// of <paramref name="step"/> (the last may be shorter), depending on k alone.
    /// </summary>
    private static void KSplit(int k, int kc, out int blocks, out int step)
    {
        blocks = (k + kc - 1) / kc;
        step = (k + blocks - 1) / blocks;
    }

    /// <summary>
    /// C[m, n] = alpha * op(A)[m, k] op(B)[k, n] + beta * C + bias, m &lt;= <see cref="SmallRows"/>,
    /// vector kernel sets only (the scalar set takes the packed path).
    /// </summary>
    private static void MultiplySmall(CpuThreadPool pool, float* c, float* a, float* b, int m, int n, int k,
        bool transA, bool transB, float alpha, float beta, float* bias, GemmIsa isa)
    {
        // Row groups: full vectors of `lanes` rows, then one narrower (or padded) vector for the rest.
        int lanes = isa == GemmIsa.Vector512 ? 16 : 8;
        int fullRows = m / lanes * lanes;
        int rest = m - fullRows;
        int restWidth = rest == 0 ? 0 : rest <= 4 ? 4 : rest <= 8 ? 8 : lanes;
        int lda = fullRows + restWidth;

        // at[k][lda] = op(A)^T, rows of A across, zero padded past m
        float* at = GemmScratch.Current.Operand((long)lda * k);
        if (transA)
        {
            // A stored [k, m]: row p of A^T is contiguous
            PackRows(at, a, m, m, k, lda);
        }
        else
        {
            // A stored [m, k]
            PackTransposed(at, a, k, m, k, lda);
        }

        KSplit(k, Blocking.For(isa).KC, out int kBlocks, out int kcStep);
        // With 1 or 2 rows, most lanes would idle: whole panels of 32 columns of a transB product take
        // the kernel that transposes B in registers instead (columns across, like the packed path).
        bool transposed = transB && m <= TransposedRows && Avx.IsSupported;
        int granule = transposed ? TPanel : SmallCols;
        // Rows across: small runs, handed out dynamically. Transposed: one contiguous run per thread.
        int perItem = transposed ? RoundUp((n + pool.ThreadCount - 1) / pool.ThreadCount, granule)
            : Math.Clamp(RoundUp((n + 8 * pool.ThreadCount - 1) / (8 * pool.ThreadCount), granule), granule, 64);
        var work = new SmallWork
        {
            C = c, At = at, B = b, M = m, N = n, K = k, Lda = lda, FullRows = fullRows, Lanes = lanes, RestWidth = restWidth,
            TransB = transB, Transposed = transposed, KBlocks = kBlocks, KcStep = kcStep, PerItem = perItem, Alpha = alpha, Beta = beta, Bias = bias,
        };
        pool.For((n + perItem - 1) / perItem, ref work);
    }

    /// <summary>One run of output columns of the small-m path, for all rows and all k.</summary>
    private struct SmallWork : IParallelWork
    {
        public float* C;
        public float* At;
        public float* B;
        public int M;
        public int N;
        public int K;
        public int Lda;
        public int FullRows;
        public int Lanes;
        public int RestWidth;
        public bool TransB;
        public bool Transposed;
        public int KBlocks;
        public int KcStep;
        public int PerItem;
        public float Alpha;
        public float Beta;
        public float* Bias;

        public readonly void Execute(int item, int worker)
        {
            // tile[column][lane], or tile[row][32] for a transposed panel: one kernel call's accumulators
            float* tile = stackalloc float[SmallCols * 16];
            int j1 = Math.Min(N, (item + 1) * PerItem);
            // B(p, j) at B[j * sj + p * sp]
            long sj = TransB ? K : 1, sp = TransB ? 1 : N;
            int j = item * PerItem;
            if (Transposed)
            {
                // Whole panels of 32 weight rows, transposed in registers (m <= 2).
                for (; j + TPanel <= j1; j += TPanel)
                {
                    float* w = B + (long)j * K;
                    for (int q = 0; q < KBlocks; q++)
                    {
                        int pc = q * KcStep;
                        int kc = Math.Min(KcStep, K - pc);
                        float* x = At + (long)pc * Lda;
                        switch (M)
                        {
                            case 1:
                                SmallKernelT<Rows1>(x, Lda, w + pc, K, kc, tile);
                                break;
                            default:
                                SmallKernelT<Rows2>(x, Lda, w + pc, K, kc, tile);
                                break;
                        }

                        bool first = q == 0;
                        WriteTile(tile, TPanel, C + j, N, M, TPanel, Alpha, first ? Beta : 1f,
                            first && Bias != null ? Bias + j : null);
                    }
                }
            }

            for (; j < j1; j += SmallCols)
            {
                int cols = Math.Min(SmallCols, j1 - j);
                for (int q = 0; q < KBlocks; q++)
                {
                    int pc = q * KcStep;
                    int kc = Math.Min(KcStep, K - pc);
                    bool first = q == 0;
                    float beta = first ? Beta : 1f;
                    float* bias = first && Bias != null ? Bias + j : null;
                    float* w = B + j * sj + pc * sp;
                    float* x = At + (long)pc * Lda;
                    int i = 0;
                    if (Lanes == 8)
                    {
                        // Two row vectors share each broadcast of B: 6 loads per 8 FMAs instead of 9,
                        // which is what bounds the one-vector kernel on AVX2 machines. A last pair may
                        // take in the zero-padded rest (an 8-wide one): its padding rows are not written.
                        for (; i + 16 <= Lda; i += 16)
                        {
                            SmallKernel256Rows16(x + i, Lda, w, sj, sp, 0, cols, kc, tile);
                            if (cols > 4)
                            {
                                SmallKernel256Rows16(x + i, Lda, w, sj, sp, 4, cols, kc, tile);
                            }

                            WriteTileRows8(tile, C + (long)i * N + j, N, Math.Min(16, M - i), cols, Alpha, beta, bias);
                        }
                    }

                    for (; i < FullRows; i += Lanes)
                    {
                        if (Lanes == 16)
                        {
                            SmallKernel512(x + i, Lda, w, sj, sp, cols, kc, tile);
                        }
                        else
                        {
                            SmallKernel256(x + i, Lda, w, sj, sp, cols, kc, tile);
                        }

                        WriteTileColumns(tile, Lanes, C + (long)i * N + j, N, Lanes, cols, Alpha, beta, bias);
                    }

                    if (RestWidth > 0 && i == FullRows)
                    {
                        float* xr = x + FullRows;
                        switch (RestWidth)
                        {
                            case 4:
                                SmallKernel128(xr, Lda, w, sj, sp, cols, kc, tile);
                                break;
                            case 8:
                                SmallKernel256(xr, Lda, w, sj, sp, cols, kc, tile);
                                break;
                            default:
                                SmallKernel512(xr, Lda, w, sj, sp, cols, kc, tile);
                                break;
                        }

                        WriteTileColumns(tile, RestWidth, C + (long)FullRows * N + j, N, M - FullRows, cols, Alpha, beta, bias);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Writes a column-major accumulator tile (element (ii, jj) at <c>tile[jj * ldt + ii]</c>):
    /// <c>C = alpha * acc + beta * C + bias</c>, the same arithmetic as <see cref="WriteTile"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WriteTileColumns(float* tile, int ldt, float* c, long ldc, int rows, int cols,
        float alpha, float beta, float* bias)
    {
        for (int ii = 0; ii < rows; ii++)
        {
            float* t = tile + ii;
            float* row = c + ii * ldc;
            for (int jj = 0; jj < cols; jj++)
            {
                float acc = t[jj * ldt];
                float v = beta == 0 ? acc * alpha : MathF.FusedMultiplyAdd(acc, alpha, row[jj] * beta);
                row[jj] = bias == null ? v : v + bias[jj];
            }
        }
    }

    /// <summary>
    /// 16 rows x 8 columns over kc steps of k: <c>acc_j = fma(x[p * lda .. + 16], B(p, j), acc_j)</c>
    /// with B(p, j) at <c>w[j * sj + p * sp]</c>; columns past <paramref name="cols"/> repeat the
    /// last one. Stores the accumulators to tile[8][16].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void SmallKernel512(float* x, long lda, float* w, long sj, long sp, int cols, int kc, float* tile)
    {
        float* w0 = w, w1 = w + Math.Min(1, cols - 1) * sj, w2 = w + Math.Min(2, cols - 1) * sj;
        float* w3 = w + Math.Min(3, cols - 1) * sj, w4 = w + Math.Min(4, cols - 1) * sj;
        float* w5 = w + Math.Min(5, cols - 1) * sj, w6 = w + Math.Min(6, cols - 1) * sj;
        float* w7 = w + Math.Min(7, cols - 1) * sj;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
        Vector512<float> c4 = default, c5 = default, c6 = default, c7 = default;
        long off = 0;
        for (int p = 0; p < kc; p++, x += lda, off += sp)
        {
            Vector512<float> a = Vector512.Load(x);
            c0 = Vector512.FusedMultiplyAdd(a, Vector512.Create(w0[off]), c0);
            c1 = Vector512.FusedMultiplyAdd(a, Vector512.Create(w1[off]), c1);
            c2 = Vector512.FusedMultiplyAdd(a, Vector512.Create(w2[off]), c2);
            c3 = Vector512.FusedMultiplyAdd(a, Vector512.Create(w3[off]), c3);
            c4 = Vector512.FusedMultiplyAdd(a, Vector512.Create(w4[off]), c4);
            c5 = Vector512.FusedMultiplyAdd(a, Vector512.Create(w5[off]), c5);
            c6 = Vector512.FusedMultiplyAdd(a, Vector512.Create(w6[off]), c6);
            c7 = Vector512.FusedMultiplyAdd(a, Vector512.Create(w7[off]), c7);
        }

        c0.Store(tile);
        c1.Store(tile + 16);
        c2.Store(tile + 32);
        c3.Store(tile + 48);
        c4.Store(tile + 64);
        c5.Store(tile + 80);
        c6.Store(tile + 96);
        c7.Store(tile + 112);
    }

    /// <summary>8 rows x 8 columns; as <see cref="SmallKernel512"/>, tile[8][8].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void SmallKernel256(float* x, long lda, float* w, long sj, long sp, int cols, int kc, float* tile)
    {
        float* w0 = w, w1 = w + Math.Min(1, cols - 1) * sj, w2 = w + Math.Min(2, cols - 1) * sj;
        float* w3 = w + Math.Min(3, cols - 1) * sj, w4 = w + Math.Min(4, cols - 1) * sj;
        float* w5 = w + Math.Min(5, cols - 1) * sj, w6 = w + Math.Min(6, cols - 1) * sj;
        float* w7 = w + Math.Min(7, cols - 1) * sj;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        Vector256<float> c4 = default, c5 = default, c6 = default, c7 = default;
        long off = 0;
        for (int p = 0; p < kc; p++, x += lda, off += sp)
        {
            Vector256<float> a = Vector256.Load(x);
            c0 = Vector256.FusedMultiplyAdd(a, Vector256.Create(w0[off]), c0);
            c1 = Vector256.FusedMultiplyAdd(a, Vector256.Create(w1[off]), c1);
            c2 = Vector256.FusedMultiplyAdd(a, Vector256.Create(w2[off]), c2);
            c3 = Vector256.FusedMultiplyAdd(a, Vector256.Create(w3[off]), c3);
            c4 = Vector256.FusedMultiplyAdd(a, Vector256.Create(w4[off]), c4);
            c5 = Vector256.FusedMultiplyAdd(a, Vector256.Create(w5[off]), c5);
            c6 = Vector256.FusedMultiplyAdd(a, Vector256.Create(w6[off]), c6);
            c7 = Vector256.FusedMultiplyAdd(a, Vector256.Create(w7[off]), c7);
        }

        c0.Store(tile);
        c1.Store(tile + 8);
        c2.Store(tile + 16);
        c3.Store(tile + 24);
        c4.Store(tile + 32);
        c5.Store(tile + 40);
        c6.Store(tile + 48);
        c7.Store(tile + 56);
    }

    /// <summary>
    /// 16 rows (two vectors) x columns first .. first + 3 of the group; as <see cref="SmallKernel256"/>
    /// with the same per-element chain, transposed in registers and stored row-major to columns
    /// first .. first + 3 of tile[16][8], so the write-back runs along rows of C (columns past
    /// <paramref name="cols"/> repeat the last one).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void SmallKernel256Rows16(float* x, long lda, float* w, long sj, long sp, int first, int cols, int kc, float* tile)
    {
        float* w0 = w + Math.Min(first, cols - 1) * sj, w1 = w + Math.Min(first + 1, cols - 1) * sj;
        float* w2 = w + Math.Min(first + 2, cols - 1) * sj, w3 = w + Math.Min(first + 3, cols - 1) * sj;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        Vector256<float> d0 = default, d1 = default, d2 = default, d3 = default;
        long off = 0;
        for (int p = 0; p < kc; p++, x += lda, off += sp)
        {
            Vector256<float> a = Vector256.Load(x);
            Vector256<float> a8 = Vector256.Load(x + 8);
            Vector256<float> b = Vector256.Create(w0[off]);
            c0 = Vector256.FusedMultiplyAdd(a, b, c0);
            d0 = Vector256.FusedMultiplyAdd(a8, b, d0);
            b = Vector256.Create(w1[off]);
            c1 = Vector256.FusedMultiplyAdd(a, b, c1);
            d1 = Vector256.FusedMultiplyAdd(a8, b, d1);
            b = Vector256.Create(w2[off]);
            c2 = Vector256.FusedMultiplyAdd(a, b, c2);
            d2 = Vector256.FusedMultiplyAdd(a8, b, d2);
            b = Vector256.Create(w3[off]);
            c3 = Vector256.FusedMultiplyAdd(a, b, c3);
            d3 = Vector256.FusedMultiplyAdd(a8, b, d3);
        }

        // Column vectors (8 rows each) to the first 4 floats of rows 0..7 of the [rows][8] tile.
        Transpose4x8(c0, c1, c2, c3, tile + first, 8);
        Transpose4x8(d0, d1, d2, d3, tile + 64 + first, 8);
    }

    /// <summary>
    /// Writes a row-major tile[rows][8] as <see cref="WriteTileColumns"/> does, 8 columns of a row
    /// at once when the group is whole: the same operations lane by lane, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WriteTileRows8(float* tile, float* c, long ldc, int rows, int cols,
        float alpha, float beta, float* bias)
    {
        if (cols < 8)
        {
            for (int ii = 0; ii < rows; ii++)
            {
                float* t = tile + (ii * 8);
                float* row = c + (ii * ldc);
                for (int jj = 0; jj < cols; jj++)
                {
                    float v = beta == 0 ? t[jj] * alpha : MathF.FusedMultiplyAdd(t[jj], alpha, row[jj] * beta);
                    row[jj] = bias == null ? v : v + bias[jj];
                }
            }

            return;
        }

        Vector256<float> va = Vector256.Create(alpha), vb = Vector256.Create(beta);
        Vector256<float> vbias = bias == null ? default : Vector256.Load(bias);
        for (int ii = 0; ii < rows; ii++)
        {
            float* row = c + (ii * ldc);
            Vector256<float> acc = Vector256.Load(tile + (ii * 8));
            Vector256<float> v = beta == 0 ? acc * va : Vector256.FusedMultiplyAdd(acc, va, Vector256.Load(row) * vb);
            (bias == null ? v : v + vbias).Store(row);
        }
    }

    /// <summary>4 rows x 8 columns; as <see cref="SmallKernel512"/>, tile[8][4].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void SmallKernel128(float* x, long lda, float* w, long sj, long sp, int cols, int kc, float* tile)
    {
        float* w0 = w, w1 = w + Math.Min(1, cols - 1) * sj, w2 = w + Math.Min(2, cols - 1) * sj;
        float* w3 = w + Math.Min(3, cols - 1) * sj, w4 = w + Math.Min(4, cols - 1) * sj;
        float* w5 = w + Math.Min(5, cols - 1) * sj, w6 = w + Math.Min(6, cols - 1) * sj;
        float* w7 = w + Math.Min(7, cols - 1) * sj;
        Vector128<float> c0 = default, c1 = default, c2 = default, c3 = default;
        Vector128<float> c4 = default, c5 = default, c6 = default, c7 = default;
        long off = 0;
        for (int p = 0; p < kc; p++, x += lda, off += sp)
        {
            Vector128<float> a = Vector128.Load(x);
            c0 = Vector128.FusedMultiplyAdd(a, Vector128.Create(w0[off]), c0);
            c1 = Vector128.FusedMultiplyAdd(a, Vector128.Create(w1[off]), c1);
            c2 = Vector128.FusedMultiplyAdd(a, Vector128.Create(w2[off]), c2);
            c3 = Vector128.FusedMultiplyAdd(a, Vector128.Create(w3[off]), c3);
            c4 = Vector128.FusedMultiplyAdd(a, Vector128.Create(w4[off]), c4);
            c5 = Vector128.FusedMultiplyAdd(a, Vector128.Create(w5[off]), c5);
            c6 = Vector128.FusedMultiplyAdd(a, Vector128.Create(w6[off]), c6);
            c7 = Vector128.FusedMultiplyAdd(a, Vector128.Create(w7[off]), c7);
        }

        c0.Store(tile);
        c1.Store(tile + 4);
        c2.Store(tile + 8);
        c3.Store(tile + 12);
        c4.Store(tile + 16);
        c5.Store(tile + 20);
        c6.Store(tile + 24);
        c7.Store(tile + 28);
    }

    /// <summary>A row count known to the JIT, so <see cref="SmallKernelT{TR}"/> compiles to the FMAs it needs only.</summary>
    private interface IRowCount
    {
        static abstract int Rows { get; }
    }

    private struct Rows1 : IRowCount
    {
        public static int Rows => 1;
    }

    private struct Rows2 : IRowCount
    {
        public static int Rows => 2;
    }

    /// <summary>
    /// TR.Rows (1 or 2) rows x 32 columns over kc steps of k, B stored [n, k] (row stride ldw):
    /// 8 x 8 blocks of four groups of 8 weight rows are transposed in registers and run through
    /// <c>acc[i][cols] = fma(x[p * lda + i], B[cols, p], acc[i][cols])</c> for p in order, the
    /// packed micro-kernel's chain. Stores the accumulators to tile[2][32] (row-major). Each row is
    /// prefetched <see cref="PrefetchAhead"/> floats ahead (past a row's end: the next row's start,
    /// read soon after; a prefetch never faults).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void SmallKernelT<TR>(float* x, long lda, float* w, long ldw, int kc, float* tile)
        where TR : struct, IRowCount
    {
        Vector256<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector256<float> c10 = default, c11 = default, c12 = default, c13 = default;
        float* w1 = w + 8 * ldw, w2 = w1 + 8 * ldw, w3 = w2 + 8 * ldw;
        int p = 0;
        // 16 steps of k at a time, each group's two 8 x 8 blocks back to back: a row's cache line
        // is used up at once, so the 32 rows never need to stay in L1 together (with k a power of
        // two they fall into a few sets and evict each other).
        for (; p + 16 <= kc; p += 16, x += 16 * lda)
        {
            float* f = w + p + PrefetchAhead;
            for (int r = 0; r < TPanel; r++, f += ldw)
            {
                Sse.Prefetch1(f);
            }

            TransposedStep<TR>(w + p, ldw, x, lda, ref c00, ref c10);
            TransposedStep<TR>(w + p + 8, ldw, x + 8 * lda, lda, ref c00, ref c10);
            TransposedStep<TR>(w1 + p, ldw, x, lda, ref c01, ref c11);
            TransposedStep<TR>(w1 + p + 8, ldw, x + 8 * lda, lda, ref c01, ref c11);
            TransposedStep<TR>(w2 + p, ldw, x, lda, ref c02, ref c12);
            TransposedStep<TR>(w2 + p + 8, ldw, x + 8 * lda, lda, ref c02, ref c12);
            TransposedStep<TR>(w3 + p, ldw, x, lda, ref c03, ref c13);
            TransposedStep<TR>(w3 + p + 8, ldw, x + 8 * lda, lda, ref c03, ref c13);
        }

        if (p + 8 <= kc)
        {
            TransposedStep<TR>(w + p, ldw, x, lda, ref c00, ref c10);
            TransposedStep<TR>(w1 + p, ldw, x, lda, ref c01, ref c11);
            TransposedStep<TR>(w2 + p, ldw, x, lda, ref c02, ref c12);
            TransposedStep<TR>(w3 + p, ldw, x, lda, ref c03, ref c13);
            p += 8;
            x += 8 * lda;
        }

        for (; p < kc; p++, x += lda)
        {
            TransposedTail<TR>(w + p, ldw, x, ref c00, ref c10);
            TransposedTail<TR>(w1 + p, ldw, x, ref c01, ref c11);
            TransposedTail<TR>(w2 + p, ldw, x, ref c02, ref c12);
            TransposedTail<TR>(w3 + p, ldw, x, ref c03, ref c13);
        }

        c00.Store(tile);
        c01.Store(tile + 8);
        c02.Store(tile + 16);
        c03.Store(tile + 24);
        c10.Store(tile + 32);
        c11.Store(tile + 40);
        c12.Store(tile + 48);
        c13.Store(tile + 56);
    }

    /// <summary>
    /// 8 steps of k for one group of 8 weight rows (row stride ldw): transposed in registers, then
    /// the FMAs in k order. Rows r and r + 4 are loaded side by side (one 128-bit half each), so
    /// two shuffle stages give whole columns [B(rows 0..3, p) | B(rows 4..7, p)].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposedStep<TR>(float* w, long ldw, float* x, long lda,
        ref Vector256<float> c0, ref Vector256<float> c1)
        where TR : struct, IRowCount
    {
        TransposedHalf<TR>(w, ldw, x, lda, ref c0, ref c1);
        TransposedHalf<TR>(w + 4, ldw, x + 4 * lda, lda, ref c0, ref c1);
    }

    /// <summary>The first or second 4 steps of <see cref="TransposedStep{TR}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposedHalf<TR>(float* w, long ldw, float* x, long lda,
        ref Vector256<float> c0, ref Vector256<float> c1)
        where TR : struct, IRowCount
    {
        float* w4 = w + 4 * ldw;
        Vector256<float> r0 = Avx.InsertVector128(Sse.LoadVector128(w).ToVector256Unsafe(), Sse.LoadVector128(w4), 1);
        Vector256<float> r1 = Avx.InsertVector128(Sse.LoadVector128(w + ldw).ToVector256Unsafe(), Sse.LoadVector128(w4 + ldw), 1);
        Vector256<float> r2 = Avx.InsertVector128(Sse.LoadVector128(w + 2 * ldw).ToVector256Unsafe(), Sse.LoadVector128(w4 + 2 * ldw), 1);
        Vector256<float> r3 = Avx.InsertVector128(Sse.LoadVector128(w + 3 * ldw).ToVector256Unsafe(), Sse.LoadVector128(w4 + 3 * ldw), 1);
        Vector256<float> t0 = Avx.UnpackLow(r0, r1);
        Vector256<float> t1 = Avx.UnpackHigh(r0, r1);
        Vector256<float> t2 = Avx.UnpackLow(r2, r3);
        Vector256<float> t3 = Avx.UnpackHigh(r2, r3);
        TransposedFma<TR>(Avx.Shuffle(t0, t2, 0x44), x, ref c0, ref c1);
        TransposedFma<TR>(Avx.Shuffle(t0, t2, 0xEE), x + lda, ref c0, ref c1);
        TransposedFma<TR>(Avx.Shuffle(t1, t3, 0x44), x + 2 * lda, ref c0, ref c1);
        TransposedFma<TR>(Avx.Shuffle(t1, t3, 0xEE), x + 3 * lda, ref c0, ref c1);
    }

    /// <summary>One step of k for one group of 8 weight rows, gathered element by element.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposedTail<TR>(float* w, long ldw, float* x,
        ref Vector256<float> c0, ref Vector256<float> c1)
        where TR : struct, IRowCount
    {
        Vector256<float> col = Vector256.Create(w[0], w[ldw], w[2 * ldw], w[3 * ldw], w[4 * ldw], w[5 * ldw], w[6 * ldw], w[7 * ldw]);
        TransposedFma<TR>(col, x, ref c0, ref c1);
    }

    /// <summary>acc[i] = fma(x[i], col, acc[i]) for the TR.Rows rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposedFma<TR>(Vector256<float> col, float* x,
        ref Vector256<float> c0, ref Vector256<float> c1)
        where TR : struct, IRowCount
    {
        c0 = Vector256.FusedMultiplyAdd(Vector256.Create(x[0]), col, c0);
        if (TR.Rows > 1)
        {
            c1 = Vector256.FusedMultiplyAdd(Vector256.Create(x[1]), col, c1);
        }
    }
}

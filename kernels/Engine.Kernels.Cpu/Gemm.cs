using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Engine.Core;

namespace Engine.Kernels.Cpu;

internal sealed unsafe partial class CpuAccelerator
{
    // C[m,n] = alpha * op(A)[m,k] op(B)[k,n] + beta * C + bias[n]
    protected override void GemmCore(Tensor c, Tensor a, Tensor b, int m, int n, int k, bool transA, bool transB,
        float alpha, float beta, Tensor bias) =>
        CpuGemm.Multiply(Pool, F(c), F(a), F(b), m, n, k, transA, transB, alpha, beta, F(bias));

    // db[cols] += sum over rows of dy[rows, cols]
    protected override void BiasBackwardCore(Tensor db, Tensor dy, int rows, int cols) =>
        CpuGemm.BiasBackward(Pool, F(db), F(dy), rows, cols);
}

/// <summary>Which micro-kernels a GEMM runs: the widest the hardware accelerates, or a narrower one for tests.</summary>
internal enum GemmIsa
{
    /// <summary>Plain scalar loops.</summary>
    Scalar,

    /// <summary>Vector256 (AVX2/FMA) kernels, 6 x 16 register tile.</summary>
    Vector256,

    /// <summary>Vector512 (AVX-512) kernels, 12 x 32 register tile.</summary>
    Vector512,
}

/// <summary>
/// Pointer-level GEMM used by every CPU kernel that needs a matrix product.
/// </summary>
/// <remarks>
/// <para>
/// GotoBLAS/BLIS structure. The inner dimension is cut into equal KC blocks (at most <see cref="KBlock"/>, whatever the kernel set) and the
/// columns into chunks of at most NC. For each chunk, one parallel loop packs B for all its k
/// blocks (or for as many as <see cref="PackedBudget"/> holds when k x NC is large) into zero-padded
/// kc x NR panels, shared read-only by every thread; a second parallel loop hands out the macro
/// tiles of C (up to MC rows x a run of panels). Each tile walks the k blocks in order: it packs
/// its rows of A for the block into MR x kc panels in its thread's scratch and runs the
/// register-resident MR x NR micro-kernel (12 x 32 with Vector512, 6 x 16 with Vector256) over
/// the tile; alpha, beta and the bias are applied in the first block's write-back, later blocks
/// add onto C. Transposes are absorbed by the packing, so all four forms run the same kernel.
/// </para>
/// <para>
/// Determinism: every element of C is the sum over the k blocks, in order, of one FMA chain over
/// the block's k in order, whatever tile, thread or split computed it. The k blocks depend on k
/// alone; only the split of C into work items follows the thread count, and that does not change
/// any element's arithmetic, so the result is bit-identical for any number of threads, and as every
/// kernel set (Vector512, Vector256, scalar) runs the same chains, for any vector width too.
/// </para>
/// <para>
/// Decode shapes (at most <see cref="SmallRows"/> rows, any transposes) skip packing B:
/// <see cref="MultiplySmall"/> reads it in place, once, in parallel over the columns, with the same
/// k blocks, the same per-element FMA chains and the same write-back, so every element of C has
/// the same bits on either path (batch invariance: a row of C depends on its row of op(A) only).
/// </para>
/// </remarks>
internal static unsafe partial class CpuGemm
{
    /// <summary>Rows at or below which a product takes the unpacked small-m path (vector kernel sets).</summary>
    internal const int SmallRows = 64;

    /// <summary>
    /// Most k of one block of the canonical order, the same for every kernel set (the k blocks decide
    /// each element's chain of FMAs, so they may not follow the vector width).
    /// </summary>
    private const int KBlock = 512;

    /// <summary>Panels of B packed by one work item of the packing loop.</summary>
    private const int PackPanelsPerItem = 4;

    /// <summary>The widest kernels this machine accelerates.</summary>
    public static readonly GemmIsa BestIsa = Vector512.IsHardwareAccelerated ? GemmIsa.Vector512
        : Vector256.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Fma.IsSupported ? GemmIsa.Vector256
        : GemmIsa.Scalar;

    /// <summary>
    /// <c>C[m,n] = alpha * op(A) op(B) + beta * C + bias[n]</c>, row-major, dense (see
    /// <see cref="Accelerator.Gemm"/>). <paramref name="bias"/> may be null. With beta = 0, C is not read.
    /// </summary>
    public static void Multiply(CpuThreadPool pool, float* c, float* a, float* b, int m, int n, int k,
        bool transA, bool transB, float alpha, float beta, float* bias) =>
        Multiply(pool, c, a, b, m, n, k, transA, transB, alpha, beta, bias, BestIsa);

    /// <summary>
    /// As <see cref="Multiply(CpuThreadPool, float*, float*, float*, int, int, int, bool, bool, float, float, float*)"/>
    /// with a chosen kernel set and packed-B budget (tests use both to reach every path on any machine).
    /// </summary>
    internal static void Multiply(CpuThreadPool pool, float* c, float* a, float* b, int m, int n, int k,
        bool transA, bool transB, float alpha, float beta, float* bias, GemmIsa isa, long packedBudget = PackedBudget)
    {
        if (m <= 0 || n <= 0)
        {
            return;
        }

        if (k <= 0)
        {
            ScaleOnly(c, m, n, beta, bias);
        }
        else if (m <= SmallRows && isa != GemmIsa.Scalar)
        {
            MultiplySmall(pool, c, a, b, m, n, k, transA, transB, alpha, beta, bias, isa);
        }
        else
        {
            MultiplyPacked(pool, c, a, b, m, n, k, transA, transB, alpha, beta, bias, isa, packedBudget);
        }
    }

    /// <summary>Blocking of the packed path for one kernel set.</summary>
    private readonly struct Blocking(int mr, int nr, int kc, int mc, int nc)
    {
        /// <summary>Rows of the register tile (broadcast operand, A).</summary>
        public readonly int MR = mr;

        /// <summary>Columns of the register tile (vector operand, B).</summary>
        public readonly int NR = nr;

        /// <summary>
        /// Inner-dimension block: <see cref="KBlock"/> for every kernel set, so results depend neither on
        /// the thread count nor on the vector width.
        /// </summary>
        public readonly int KC = kc;

        /// <summary>Most rows of A packed by one work item (a multiple of MR).</summary>
        public readonly int MC = mc;

        /// <summary>Columns of B packed at once (a multiple of NR).</summary>
        public readonly int NC = nc;

        public static Blocking For(GemmIsa isa) => isa switch
        {
            GemmIsa.Vector512 => new Blocking(12, 32, KBlock, 144, 4096),
            GemmIsa.Vector256 => new Blocking(6, 16, KBlock, 96, 4096),
            _ => new Blocking(4, 8, KBlock, 64, 1024),
        };
    }

    /// <summary>The packed (BLIS-style) path for every shape but the small-m transB one.</summary>
    private static void MultiplyPacked(CpuThreadPool pool, float* c, float* a, float* b, int m, int n, int k,
        bool transA, bool transB, float alpha, float beta, float* bias, GemmIsa isa, long packedBudget)
    {
        Blocking bl = Blocking.For(isa);
        int mr = bl.MR, nr = bl.NR;

        // Inner-dimension blocks of equal size: they depend on k alone, never on the thread count.
        KSplit(k, bl.KC, out int kBlocks, out int kcStep);

        // Column chunks of equal size (whole panels). B is packed for as many k blocks at once as
        // PackedBudget holds (all of them unless k x NC is large), then one parallel loop runs them all.
        int nChunks = (n + bl.NC - 1) / bl.NC;
        int ncStep = RoundUp((n + nChunks - 1) / nChunks, nr);
        int groupBlocks = (int)Math.Clamp(packedBudget / ((long)kcStep * ncStep), 1, kBlocks);

        // Enough work items to keep every thread busy when some are slowed down by other load:
        // rows are split first (A is then packed once per k block); columns only when rows run out.
        // The split decides who computes a tile, never how, so it may follow the thread count.
        int wanted = 8 * pool.ThreadCount;
        int rowBlocks = Math.Clamp(wanted, (m + bl.MC - 1) / bl.MC, Math.Max(1, m / (4 * mr)));
        int mc = RoundUp((m + rowBlocks - 1) / rowBlocks, mr);
        rowBlocks = (m + mc - 1) / mc;

        // packedB[k block of the group][panel][kc][NR]
        float* packedB = GemmScratch.Current.PackedB((long)groupBlocks * kcStep * ncStep);
        for (int jc = 0; jc < n; jc += ncStep)
        {
            int nb = Math.Min(ncStep, n - jc);
            int panels = (nb + nr - 1) / nr;
            int colBlocks = 2 * rowBlocks >= wanted ? 1
                : Math.Clamp((wanted + rowBlocks - 1) / rowBlocks, 1, Math.Max(1, panels / 4));
            int panelsPerBlock = (panels + colBlocks - 1) / colBlocks;
            colBlocks = (panels + panelsPerBlock - 1) / panelsPerBlock;

            for (int q0 = 0; q0 < kBlocks; q0 += groupBlocks)
            {
                int q1 = Math.Min(kBlocks, q0 + groupBlocks);
                int packItems = (panels + PackPanelsPerItem - 1) / PackPanelsPerItem;
                var pack = new PackBWork
                {
                    Dst = packedB, B = b, N = n, K = k, TransB = transB, Jc = jc, Nb = nb, NR = nr,
                    KcStep = kcStep, Q0 = q0, PackItems = packItems,
                };
                pool.For(packItems * (q1 - q0), ref pack);

                var work = new BlockWork
                {
                    C = c, A = a, PackedB = packedB, M = m, N = n, K = k, TransA = transA, Jc = jc,
                    KcStep = kcStep, Q0 = q0, Q1 = q1, Mc = mc, Panels = panels, PanelsPerBlock = panelsPerBlock,
                    ColBlocks = colBlocks, Alpha = alpha, Beta = beta, Bias = bias, MR = mr, NR = nr, Isa = isa,
                };
                pool.For(rowBlocks * colBlocks, ref work);
            }
        }
    }

    /// <summary>
    /// Floats of packed B held at once (4 MiB; at least one KC x NC block). Small enough that a packed
    /// group stays in L3 between its packing loop and the row blocks that all stream it: at n = 2048 a
    /// group is then one 4 MiB k block instead of all four (16 MiB, written out to DRAM and read back).
    /// Which k blocks are grouped never changes a bit (each block's chains and write-back are the same).
    /// </summary>
    private const long PackedBudget = 1L << 20;

    private static int RoundUp(int x, int multiple) => (x + multiple - 1) / multiple * multiple;

    /// <summary>Packs a run of B panels of one k block of the group, for one column chunk.</summary>
    private struct PackBWork : IParallelWork
    {
        public float* Dst;
        public float* B;
        public int N;
        public int K;
        public bool TransB;
        public int Jc;
        public int Nb;
        public int NR;
        public int KcStep;
        public int Q0;
        public int PackItems;

        public readonly void Execute(int item, int worker)
        {
            int g = item / PackItems;
            int p0 = (item - g * PackItems) * PackPanelsPerItem;
            int pc = (Q0 + g) * KcStep;
            int kc = Math.Min(KcStep, K - pc);
            int panels = (Nb + NR - 1) / NR;
            int j0 = Jc + p0 * NR;
            int cols = Math.Min(PackPanelsPerItem * NR, Jc + Nb - j0);
            // This k block's panels start after the g earlier (full) blocks of the group.
            float* dst = Dst + (long)g * KcStep * panels * NR + (long)p0 * kc * NR;
            if (TransB)
            {
                // B stored [n, k]: element (pc + q, j + jj) at B[(j + jj) * k + pc + q]
                for (int j = 0; j < cols; j += NR, dst += (long)kc * NR)
                {
                    PackTransposed(dst, B + (long)(j0 + j) * K + pc, K, Math.Min(NR, cols - j), kc, NR);
                }
            }
            else
            {
                // B stored [k, n]: element (pc + q, j) at B[(pc + q) * n + j]
                PackRows(dst, B + (long)pc * N + j0, N, cols, kc, NR);
            }
        }
    }

    /// <summary>
    /// One macro tile: Mc rows of C times a run of B panels, over the k blocks of the group in
    /// order. The first k block of the product applies beta and the bias; later ones add onto C.
    /// </summary>
    private struct BlockWork : IParallelWork
    {
        public float* C;
        public float* A;
        public float* PackedB;
        public int M;
        public int N;
        public int K;
        public bool TransA;
        public int Jc;
        public int KcStep;
        public int Q0;
        public int Q1;
        public int Mc;
        public int Panels;
        public int PanelsPerBlock;
        public int ColBlocks;
        public float Alpha;
        public float Beta;
        public float* Bias;
        public int MR;
        public int NR;
        public GemmIsa Isa;

        public readonly void Execute(int item, int worker)
        {
            int mr = MR, nr = NR;
            int rowBlock = item / ColBlocks;
            int colBlock = item - rowBlock * ColBlocks;
            int i0 = rowBlock * Mc;
            int mb = Math.Min(Mc, M - i0);
            int rowPanels = (mb + mr - 1) / mr;
            int p0 = colBlock * PanelsPerBlock;
            int p1 = Math.Min(Panels, p0 + PanelsPerBlock);

            GemmScratch scratch = GemmScratch.Current;
            // packedA[rowPanel][kc][MR]
            float* packedA = scratch.PackedA((long)rowPanels * mr * KcStep);
            float* tile = scratch.Tile((long)mr * nr);
            for (int q = Q0; q < Q1; q++)
            {
                int pc = q * KcStep;
                int kc = Math.Min(KcStep, K - pc);
                bool first = q == 0;
                float beta = first ? Beta : 1f;
                float* biasRow = first ? Bias : null;
                if (TransA)
                {
                    // A stored [k, m]: element (i, pc + p) at A[(pc + p) * m + i]
                    PackRows(packedA, A + (long)pc * M + i0, M, mb, kc, mr);
                }
                else
                {
                    // A stored [m, k]: element (i, pc + p) at A[i * k + pc + p]
                    for (int ip = 0; ip < rowPanels; ip++)
                    {
                        int i = i0 + ip * mr;
                        PackTransposed(packedA + (long)ip * kc * mr, A + (long)i * K + pc, K, Math.Min(mr, M - i), kc, mr);
                    }
                }

                float* packedB = PackedB + (long)(q - Q0) * KcStep * Panels * nr;
                for (int jp = p0; jp < p1; jp++)
                {
                    int j = Jc + jp * nr;
                    int cols = Math.Min(nr, N - j);
                    float* bp = packedB + (long)jp * kc * nr;
                    float* bias = biasRow == null ? null : biasRow + j;
                    for (int ip = 0; ip < rowPanels; ip++)
                    {
                        int i = i0 + ip * mr;
                        int rows = Math.Min(mr, M - i);
                        float* ap = packedA + (long)ip * kc * mr;
                        float* cp = C + (long)i * N + j;
                        switch (Isa)
                        {
                            case GemmIsa.Vector512:
                                Kernel12x32(ap, bp, kc, cp, N, rows, cols, Alpha, beta, bias, tile);
                                break;
                            case GemmIsa.Vector256:
                                Kernel6x16(ap, bp, kc, cp, N, rows, cols, Alpha, beta, bias, tile);
                                break;
                            default:
                                KernelScalar(ap, bp, kc, cp, N, rows, cols, Alpha, beta, bias, tile, mr, nr);
                                break;
                        }
                    }
                }
            }
        }
    }

    /// <summary>C = beta * C + bias when the inner dimension is empty.</summary>
    private static void ScaleOnly(float* c, int m, int n, float beta, float* bias)
    {
        for (long i = 0; i < m; i++)
        {
            float* row = c + i * n;
            for (int j = 0; j < n; j++)
            {
                float v = beta == 0 ? 0f : beta * row[j];
                row[j] = bias == null ? v : v + bias[j];
            }
        }
    }

    /// <summary>
    /// Writes an edge tile: <c>C = alpha * acc + beta * C + bias</c> for the valid rows x cols
    /// of an accumulator tile stored with row stride <paramref name="ldt"/>. Same arithmetic as the
    /// vector write-back (one FMA, then the bias), and C is not read when beta = 0.
    /// </summary>
    private static void WriteTile(float* tile, int ldt, float* c, long ldc, int rows, int cols,
        float alpha, float beta, float* bias)
    {
        for (int ii = 0; ii < rows; ii++)
        {
            float* t = tile + (long)ii * ldt;
            float* row = c + ii * ldc;
            for (int jj = 0; jj < cols; jj++)
            {
                float v = beta == 0 ? t[jj] * alpha : MathF.FusedMultiplyAdd(t[jj], alpha, row[jj] * beta);
                row[jj] = bias == null ? v : v + bias[jj];
            }
        }
    }

    /// <summary>db[cols] += column sums of dy[rows, cols]; parallel over blocks of columns, rows summed in order.</summary>
    internal static void BiasBackward(CpuThreadPool pool, float* db, float* dy, int rows, int cols)
    {
        if (rows <= 0 || cols <= 0)
        {
            return;
        }

        var work = new BiasWork { Db = db, Dy = dy, Rows = rows, Cols = cols };
        pool.For((cols + BiasWork.Block - 1) / BiasWork.Block, ref work);
    }

    /// <summary>Column sums of one block of columns: each column summed over the rows in order, then added to db.</summary>
    private struct BiasWork : IParallelWork
    {
        public const int Block = 64;
        public float* Db;
        public float* Dy;
        public int Rows;
        public int Cols;

        public readonly void Execute(int item, int worker)
        {
            int j = item * Block;
            int end = Math.Min(Cols, j + Block);
            if (Vector512.IsHardwareAccelerated)
            {
                for (; j + 64 <= end; j += 64)
                {
                    ColumnSums512x4(Db + j, Dy + j, Rows, Cols);
                }

                for (; j + 16 <= end; j += 16)
                {
                    ColumnSums512(Db + j, Dy + j, Rows, Cols);
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                for (; j + 8 <= end; j += 8)
                {
                    ColumnSums256(Db + j, Dy + j, Rows, Cols);
                }
            }

            for (; j < end; j++)
            {
                float s = 0;
                float* p = Dy + j;
                for (int r = 0; r < Rows; r++, p += Cols)
                {
                    s += *p;
                }

                Db[j] += s;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void ColumnSums512x4(float* db, float* dy, int rows, int cols)
        {
            Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int r = 0; r < rows; r++, dy += cols)
            {
                s0 += Vector512.Load(dy);
                s1 += Vector512.Load(dy + 16);
                s2 += Vector512.Load(dy + 32);
                s3 += Vector512.Load(dy + 48);
            }

            (Vector512.Load(db) + s0).Store(db);
            (Vector512.Load(db + 16) + s1).Store(db + 16);
            (Vector512.Load(db + 32) + s2).Store(db + 32);
            (Vector512.Load(db + 48) + s3).Store(db + 48);
        }

        private static void ColumnSums512(float* db, float* dy, int rows, int cols)
        {
            Vector512<float> s = default;
            for (int r = 0; r < rows; r++, dy += cols)
            {
                s += Vector512.Load(dy);
            }

            (Vector512.Load(db) + s).Store(db);
        }

        private static void ColumnSums256(float* db, float* dy, int rows, int cols)
        {
            Vector256<float> s = default;
            for (int r = 0; r < rows; r++, dy += cols)
            {
                s += Vector256.Load(dy);
            }

            (Vector256.Load(db) + s).Store(db);
        }
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Engine.Core;
using static Engine.Kernels.Cpu.AttentionSimd;

namespace Engine.Kernels.Cpu;

internal sealed unsafe partial class CpuAccelerator
{
    private AttentionScratch? attentionScratch;

    private AttentionScratch AttentionScratchFor(long floatsPerWorker)
    {
        attentionScratch ??= new AttentionScratch(Pool.ThreadCount);
        attentionScratch.Ensure(floatsPerWorker);
        return attentionScratch;
    }

    protected override void AttentionForwardCore(Tensor output, Tensor lse, Tensor qkv, int b, int t, int hq, int hkv, int d, float scale)
    {
        AttentionScratch scratch = AttentionScratchFor(CpuAttention.ScratchFloats(d));
        if (Vector512.IsHardwareAccelerated)
        {
            CpuAttention.Forward<Vector512<float>, V512>(Pool, scratch, F(output), F(lse), F(qkv), b, t, hq, hkv, d, scale);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            CpuAttention.Forward<Vector256<float>, V256>(Pool, scratch, F(output), F(lse), F(qkv), b, t, hq, hkv, d, scale);
        }
        else
        {
            CpuAttention.Forward<float, Scalar>(Pool, scratch, F(output), F(lse), F(qkv), b, t, hq, hkv, d, scale);
        }
    }

    protected override void AttentionBackwardCore(Tensor dqkv, Tensor doutput, Tensor qkv, Tensor output, Tensor lse,
        int b, int t, int hq, int hkv, int d, float scale)
    {
        AttentionScratch scratch = AttentionScratchFor(CpuAttention.ScratchFloats(d));
        if (Vector512.IsHardwareAccelerated)
        {
            CpuAttention.Backward<Vector512<float>, V512>(Pool, scratch, F(dqkv), F(doutput), F(qkv), F(output), F(lse), b, t, hq, hkv, d, scale);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            CpuAttention.Backward<Vector256<float>, V256>(Pool, scratch, F(dqkv), F(doutput), F(qkv), F(output), F(lse), b, t, hq, hkv, d, scale);
        }
        else
        {
            CpuAttention.Backward<float, Scalar>(Pool, scratch, F(dqkv), F(doutput), F(qkv), F(output), F(lse), b, t, hq, hkv, d, scale);
        }
    }
}

/// <summary>
/// Causal grouped-query self-attention, flash style: the sequence is cut into tiles of
/// <see cref="Tile"/> queries and keys, scores live only in one tile of per-worker scratch, and
/// the forward pass keeps a running max and sum per query (online softmax).
/// </summary>
/// <remarks>
/// Layout: qkv [B, T, (Hq + 2 Hkv) * D] (per row Hq query heads, Hkv key heads, Hkv value heads);
/// output [B, T, Hq * D]; lse [B, Hq, T]. Query head h reads key/value head h / (Hq / Hkv).
/// Determinism: every output element belongs to exactly one work item, and every sum runs in a
/// fixed order that depends only on the shapes, never on the thread count.
/// </remarks>
internal static unsafe class CpuAttention
{
    /// <summary>Rows of a query tile and of a key tile; also the row stride of [*, Tile] scratch tiles.</summary>
    public const int Tile = 64;

    /// <summary>
    /// Up to this many tiles per sequence (T &lt;= 512) the backward keeps each key tile's share of dQ
    /// (about (Tiles + 1) / 2 times the size of dQ, cached) instead of recomputing P and dS in a
    /// second pass. A choice by shape only, so results never depend on the thread count.
    /// </summary>
    public const int MaxFusedTiles = 8;

    /// <summary>Head size padded so every tile row is whole vectors (a multiple of 16 suits all widths).</summary>
    public static int PaddedHead(int d) => RoundUp(d, 16);

    /// <summary>Floats of scratch one worker needs for head size <paramref name="d"/> (the largest of the three passes).</summary>
    public static long ScratchFloats(int d)
    {
        long dp = PaddedHead(d);
        // Two [D, Tile] transposes, five [Tile, Dp] row tiles, two [Tile, Tile] score tiles, eight [Tile] vectors.
        return (2L * d * Tile) + (5L * Tile * dp) + (2L * Tile * Tile) + (8L * Tile);
    }

    /// <summary>
    /// Where the products read a tile of <paramref name="n"/> head rows (starting at
    /// <paramref name="rows"/>, row stride <paramref name="stride"/>) from: in place when every 4-row
    /// block is whole and D is whole vectors, else a zero-padded copy in <paramref name="copy"/>
    /// [n rounded up to 4, Dp], and <paramref name="rows"/> is moved there. Returns the row stride.
    /// </summary>
    private static int TileRows(ref float* rows, float* copy, int stride, int n, int d, int dp)
    {
        if (d == dp && n % 4 == 0)
        {
            return stride;
        }

        CopyRowsPadded(copy, dp, rows, stride, n, RoundUp(n, 4), d);
        rows = copy;
        return dp;
    }

    /// <summary><see cref="TileRows(ref float*, float*, int, int, int, int)"/> for the key and value rows of one key tile (same stride).</summary>
    private static int TileRows(ref float* keys, ref float* values, float* keyCopy, float* valueCopy, int stride, int n, int d, int dp)
    {
        TileRows(ref values, valueCopy, stride, n, d, dp);
        return TileRows(ref keys, keyCopy, stride, n, d, dp);
    }

    // ------------------------------------------------------------------------------------------
    // Forward
    // ------------------------------------------------------------------------------------------

    /// <summary>Runs the forward pass: one work item per (batch, query head, query tile).</summary>
    public static void Forward<TV, TS>(CpuThreadPool pool, AttentionScratch scratch, float* output, float* lse, float* qkv,
        int b, int t, int hq, int hkv, int d, float scale)
        where TV : struct
        where TS : struct, AttentionSimd.IOps<TV>
    {
        var work = new ForwardWork<TV, TS>
        {
            Scratch = scratch, Output = output, Lse = lse, Qkv = qkv,
            B = b, T = t, Hq = hq, Hkv = hkv, D = d, Scale = scale,
            QueryTiles = (t + Tile - 1) / Tile,
        };
        pool.For(b * hq * work.QueryTiles, ref work);
    }

    private struct ForwardWork<TV, TS> : IParallelWork
        where TV : struct
        where TS : struct, AttentionSimd.IOps<TV>
    {
        public AttentionScratch Scratch;
        public float* Output;       // [B, T, Hq*D]
        public float* Lse;          // [B, Hq, T]
        public float* Qkv;          // [B, T, (Hq + 2 Hkv) * D]
        public int B, T, Hq, Hkv, D, QueryTiles;
        public float Scale;

        public void Execute(int item, int worker)
        {
            // Items of one head (and the heads of one group) are adjacent so its keys and values stay
            // in cache; within a head the longest items (the last query tiles) come first.
            int qt = QueryTiles - 1 - (item % QueryTiles);
            int bh = item / QueryTiles;
            int bi = bh / Hq, h = bh % Hq;
            int g = h / (Hq / Hkv);
            int d = D, dp = PaddedHead(d);
            int stride = (Hq + (2 * Hkv)) * d;

            int q0 = qt * Tile;
            int nq = Math.Min(Tile, T - q0);
            var f = new ForwardTiles(Scratch.For(worker), d, nq, TS.Width);

            float* qkvBatch = Qkv + ((long)bi * T * stride);
            Transpose(f.QT, Tile, qkvBatch + ((long)q0 * stride) + (h * d), stride, nq, d);
            f.Begin();

            // Query q0+i sees key k0+j when k0+j <= q0+i.
            var mask = new CausalColumns { Q0 = q0 };
            int kEnd = q0 + nq;
            for (int k0 = 0; k0 < kEnd; k0 += Tile)
            {
                int nk = Math.Min(Tile, kEnd - k0);
                float* kRows = qkvBatch + ((long)k0 * stride);
                float* kA = kRows + ((Hq + g) * d), vA = kRows + ((Hq + Hkv + g) * d);
                int ld = TileRows(ref kA, ref vA, f.KTile, f.VTile, stride, nk, d, dp);
                f.KeyTile<TV, TS, CausalColumns>(kA, vA, ld, k0, nk, Scale, ref mask);
            }

            float* outRows = Output + (((long)bi * T + q0) * Hq * d) + (h * d);
            float* lseRow = Lse + (((long)bi * Hq + h) * T) + q0;
            for (int i = 0; i < nq; i++)
            {
                f.Finish<TV, TS>(outRows + ((long)i * Hq * d), i);
                lseRow[i] = f.M[i] + MathF.Log(f.L[i]);
            }
        }
    }

    /// <summary>The training forward's columns: query tile row i sits at position q0 + i.</summary>
    private struct CausalColumns : IForwardColumns
    {
        public int Q0;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly int First(int key) => Math.Max(0, key - Q0);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly int KeyEnd(int i0) => Q0 + i0 + 4;
    }

    /// <summary>
    /// Which query columns of a <see cref="ForwardTiles"/> see which keys. Column positions never
    /// decrease from one column to the next, so the columns that see a key are a suffix.
    /// </summary>
    internal interface IForwardColumns
    {
        /// <summary>First column whose query sees the key at position <paramref name="key"/> (every later column sees it too); at most the last used column for any key of the tile.</summary>
        int First(int key);

        /// <summary>At least one past the last key position that a query of columns i0..i0+3 sees (used columns; the result is clipped to the tile).</summary>
        int KeyEnd(int i0);
    }

    /// <summary>
    /// Where <see cref="ForwardTiles"/> reads a key tile's rows: runs of consecutive rows at stride
    /// <see cref="Ld"/> (key and value rows alike), every 4-row block of keys inside one run and
    /// readable (rows past the tile's keys may hold anything finite or not: their scores are never
    /// used), value rows whole vectors wide unless <see cref="Ld"/> is Dp.
    /// </summary>
    internal interface ITileRows
    {
        /// <summary>Row stride within a run.</summary>
        int Ld { get; }

        /// <summary>Key row j of the tile.</summary>
        float* Key(int j);

        /// <summary>Value row j of the tile.</summary>
        float* Value(int j);

        /// <summary>One past the last row of the run holding row j.</summary>
        int RunEnd(int j);
    }

    /// <summary>A key tile in one run (the training forward's rows, or a copy).</summary>
    internal struct TileRowsInPlace : ITileRows
    {
        public float* Keys, Values;
        public int Count;

        public int Ld { readonly get; set; }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly float* Key(int j) => Keys + ((long)j * Ld);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly float* Value(int j) => Values + ((long)j * Ld);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly int RunEnd(int j) => Count;
    }

    /// <summary>
    /// The online-softmax forward over one tile of up to <see cref="Tile"/> query columns, key tile by
    /// key tile, in one worker's scratch. Shared by the training forward (a tile of consecutive
    /// queries of one head) and paged attention (queries of one kv group from the KV cache), so a
    /// query gets bit-identical output from both: every column's arithmetic (dot products in
    /// ascending d, running max, rescale, exp, ascending-key sums and P V accumulation) is the same
    /// whatever the other columns are, and keys a column does not see contribute exact zeros.
    /// </summary>
    internal readonly struct ForwardTiles
    {
        public readonly float* QT;      // [D, Tile]    the queries, transposed (column i = query i); columns Nq..Nqc-1 zero (none further is read)
        public readonly float* KTile;   // [Tile, Dp]   keys of the current key tile (when not read in place)
        public readonly float* VTile;   // [Tile, Dp]   values of the current key tile (likewise)
        public readonly float* ST;      // [Tile, Tile] scores then probabilities, [key, query]
        public readonly float* Acc;     // [Tile, Dp]   unnormalised output rows
        public readonly float* M;       // [Tile] running max of the scaled scores, per query
        public readonly float* L;       // [Tile] running sum of exp(score - m)
        public readonly float* Mx;      // [Tile] a key tile's max, then its column sums
        public readonly float* Alpha;   // [Tile] rescale factor exp(m_old - m_new)
        public readonly int* Spare;     // [4 Tile] free for the caller (within ScratchFloats)
        public readonly float* Scores;  // [Tile] a lone query's scores, then probabilities, one per key
        public readonly int D, Dp, Nq, Nq4, Nqc;

        /// <summary>Lays the buffers out in <paramref name="scratch"/> (<see cref="ScratchFloats"/> floats) for <paramref name="nq"/> used columns.</summary>
        public ForwardTiles(float* scratch, int d, int nq, int width)
        {
            D = d;
            Dp = PaddedHead(d);
            Nq = nq;
            Nq4 = RoundUp(nq, 4);
            Nqc = RoundUp(nq, Math.Max(width, 4));   // score columns in use: whole vectors and whole row blocks
            QT = scratch;
            KTile = QT + (d * Tile);
            VTile = KTile + (Tile * Dp);
            ST = VTile + (Tile * Dp);
            Acc = ST + (Tile * Tile);
            M = Acc + (Tile * Dp);
            L = M + Tile;
            Mx = L + Tile;
            Alpha = Mx + Tile;
            Spare = (int*)(Alpha + Tile);
            Scores = (float*)(Spare + (4 * Tile));
        }

        /// <summary>Clears the accumulators (after <see cref="QT"/> is filled).</summary>
        public void Begin()
        {
            new Span<float>(Acc, Nq4 * Dp).Clear();
            for (int i = 0; i < Nqc; i++)
            {
                M[i] = float.NegativeInfinity;
                L[i] = 0;
            }
        }

        /// <summary>
        /// Folds the key tile at positions k0..k0+nk-1 (rows <paramref name="kA"/>, <paramref name="vA"/>,
        /// row stride <paramref name="ld"/>, whole 4-row blocks readable, D whole vectors unless
        /// <paramref name="ld"/> is Dp) into every column's running max, sum and output.
        /// </summary>
        public void KeyTile<TV, TS, TC>(float* kA, float* vA, int ld, int k0, int nk, float scale, ref TC columns)
            where TV : struct
            where TS : struct, AttentionSimd.IOps<TV>
            where TC : struct, IForwardColumns
        {
            var rows = new TileRowsInPlace { Keys = kA, Values = vA, Ld = ld, Count = nk };
            KeyTile<TV, TS, TC, TileRowsInPlace>(ref rows, k0, nk, scale, ref columns);
        }

        /// <summary>
        /// <see cref="KeyTile{TV, TS, TC}(float*, float*, int, int, int, float, ref TC)"/> with the
        /// tile's key and value rows found through <paramref name="rows"/>: runs of consecutive rows
        /// at a fixed stride (the P V sum over keys runs run by run, in key order, which is the same
        /// arithmetic as one run).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void KeyTile<TV, TS, TC, TR>(ref TR rows, int k0, int nk, float scale, ref TC columns)
            where TV : struct
            where TS : struct, AttentionSimd.IOps<TV>
            where TC : struct, IForwardColumns
            where TR : struct, ITileRows
        {
            TC cols = columns;
            TR src = rows;
            int ld = src.Ld;
            int d = D, dp = Dp, w = TS.Width, nq4 = Nq4, nqc = Nqc;
            float* sT = ST, acc = Acc, m = M, l = L, mx = Mx, alpha = Alpha, qT = QT;
            int nk4 = RoundUp(nk, 4);

            // sT[j, i] = k_j . q_i, skipping the leading columns whose queries precede every key of the block.
            // One query (decode) would use one lane in a vector of queries: the keys go into the lanes
            // instead, with the same FMA chain per score.
            bool oneQuery = Nq == 1 && d % 4 == 0 && Fma.IsSupported;
            if (oneQuery)
            {
                OneQuerySoftmax<TV, TS, TC, TR>(ref src, ref cols, k0, nk, scale);
            }
            else
            {
                for (int j0 = 0; j0 < nk4; j0 += 4)
                {
                    int c0 = cols.First(k0 + j0) / w * w;
                    if (c0 < nqc)
                    {
                        Rows4<TV, TS>(sT + (j0 * Tile), Tile, src.Key(j0), ld, 1, qT, Tile, d, c0, nqc, accumulate: false);
                    }
                }

                // Scale, mask (key k0+j visible to the columns from First(k0+j) on) and column max.
                for (int c = 0; c < nqc; c += w)
                {
                    TS.Store(mx + c, TS.Splat(float.NegativeInfinity));
                }

                for (int j = 0; j < nk; j++)
                {
                    int first = cols.First(k0 + j);
                    float* row = sT + (j * Tile);
                    for (int c = first / w * w; c < nqc; c += w)
                    {
                        TS.Store(row + c, TS.Mul(TS.Load(row + c), TS.Splat(scale)));
                        for (int i = c; i < first; i++)
                        {
                            row[i] = float.NegativeInfinity;
                        }

                        TS.Store(mx + c, TS.Max(TS.Load(mx + c), TS.Load(row + c)));
                    }
                }
            }

            // New running max (kept finite so exp(m_old - m_new) is never -inf - -inf).
            TV lowest = TS.Splat(-float.MaxValue);
            for (int c = 0; c < nqc; c += w)
            {
                TV mOld = TS.Load(m + c);
                TV mNew = TS.Max(TS.Max(mOld, TS.Load(mx + c)), lowest);
                TS.Store(alpha + c, TS.Exp(TS.Sub(mOld, mNew)));
                TS.Store(m + c, mNew);
                TS.Store(mx + c, TS.Zero);
            }

            if (oneQuery)
            {
                OneQueryProbabilities<TV, TS>(nk);
            }
            else
            {
                // Probabilities (masked entries 0) and their column sums.
                for (int j = 0; j < nk; j++)
                {
                    int first = cols.First(k0 + j);
                    float* row = sT + (j * Tile);
                    int c = 0;
                    for (; c + w <= first; c += w)
                    {
                        TS.Store(row + c, TS.Zero);
                    }

                    for (; c < nqc; c += w)
                    {
                        TV p = TS.Exp(TS.Sub(TS.Load(row + c), TS.Load(m + c)));
                        TS.Store(row + c, p);
                        TS.Store(mx + c, TS.Add(TS.Load(mx + c), p));
                    }
                }
            }

            for (int c = 0; c < nqc; c += w)
            {
                TS.Store(l + c, TS.MulAdd(TS.Load(l + c), TS.Load(alpha + c), TS.Load(mx + c)));
            }

            // acc[i, :] = alpha_i acc[i, :] + sum_j p[j, i] v_j over the keys query block i0..i0+3 can see.
            for (int i0 = 0; i0 < nq4; i0 += 4)
            {
                // Rows past the used columns are never read: a lone column skips the other three.
                bool oneRow = Nq - i0 == 1;
                for (int i = i0; i < (oneRow ? i0 + 1 : i0 + 4); i++)
                {
                    float* accRow = acc + (i * dp);
                    TV f = TS.Splat(alpha[i]);
                    for (int c = 0; c < dp; c += w)
                    {
                        TS.Store(accRow + c, TS.Mul(TS.Load(accRow + c), f));
                    }
                }

                int jEnd = Math.Min(nk, cols.KeyEnd(i0) - k0);
                for (int j = 0; j < jEnd;)
                {
                    int end = Math.Min(jEnd, src.RunEnd(j));
                    if (oneRow)
                    {
                        Row1<TV, TS>(acc + (i0 * dp), sT + (j * Tile) + i0, Tile, src.Value(j), ld, end - j, dp);
                    }
                    else
                    {
                        Rows4<TV, TS>(acc + (i0 * dp), dp, sT + (j * Tile) + i0, 1, Tile, src.Value(j), ld, end - j, 0, dp, accumulate: true);
                    }

                    j = end;
                }
            }
        }

        /// <summary>
        /// A lone query column (decode) with the keys in the vector lanes instead of the query columns,
        /// which would leave all lanes but one idle: its scaled, masked scores into <see cref="Scores"/>
        /// and its tile max into <see cref="Mx"/> (every column slot, for the running-max update that
        /// follows). Every operation a score sees is the column path's, lane by lane: the chain
        /// <c>s = fma(k[p], q[p], s)</c> from zero over p in order (16 keys at a time, rows transposed
        /// in registers 4 steps of D at a time), then <c>s * scale</c>, then -inf where masked. The max
        /// is exact whatever the order it is taken in (a zero's sign aside, which no later result sees).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void OneQuerySoftmax<TV, TS, TC, TR>(ref TR src, ref TC cols, int k0, int nk, float scale)
            where TV : struct
            where TS : struct, AttentionSimd.IOps<TV>
            where TC : struct, IForwardColumns
            where TR : struct, ITileRows
        {
            float** k = stackalloc float*[16];      // [16] key rows, clamped to the last key
            float** next = stackalloc float*[16];   // [16] the next 16 key rows (prefetched), likewise clamped
            float* sc = Scores;

            // The keys (and values) come from memory, not cache, at decode (each is read once per step),
            // and 16 rows read 16 bytes at a time leave the hardware prefetcher behind: while one group's
            // scores run, the next group's key rows and this group's value rows are prefetched, a line
            // per row every 16 floats of D. Prefetches change no result (and never fault, so the value
            // rows' offset from the key rows is taken as one constant: a wrong address costs time only).
            long valueOffset = src.Value(0) - src.Key(0);

            // Key rows are walked run by run (a block-table lookup and a division per run, not per key):
            // row j + 1 is row j plus Ld inside a run. Past the last key the pointer stays on it.
            int ld = src.Ld, walked = 0, runEnd = 0;
            float* row = null;
            for (int r = 0; r < 16; r++)
            {
                next[r] = NextKeyRow(ref src, ref walked, ref runEnd, ref row, nk, ld);
            }

            for (int j0 = 0; j0 < nk; j0 += 16)
            {
                for (int r = 0; r < 16; r++)
                {
                    k[r] = next[r];
                    next[r] = NextKeyRow(ref src, ref walked, ref runEnd, ref row, nk, ld);
                }

                bool more = j0 + 16 < nk;
                Vector256<float> s0 = default, s1 = default;
                for (int p = 0; p < D; p += 4)
                {
                    if (Sse.IsSupported && (p & 15) == 0) // a JIT-time constant: no prefetch (and no fault) off x86
                    {
                        for (int r = 0; r < 16; r++)
                        {
                            Sse.Prefetch0(k[r] + valueOffset + p);
                        }

                        if (more)
                        {
                            for (int r = 0; r < 16; r++)
                            {
                                Sse.Prefetch0(next[r] + p);
                            }
                        }
                    }

                    float* q = QT + (p * Tile);
                    KeysStep4(k, p, q, ref s0);
                    KeysStep4(k + 8, p, q, ref s1);
                }

                s0.Store(sc + j0);
                s1.Store(sc + j0 + 8);
            }

            int w = TS.Width;
            for (int j = 0; j < nk; j += w)
            {
                TS.Store(sc + j, TS.Mul(TS.Load(sc + j), TS.Splat(scale)));
            }

            float max = float.NegativeInfinity;
            for (int j = 0; j < nk; j++)
            {
                if (cols.First(k0 + j) > 0)
                {
                    sc[j] = float.NegativeInfinity;
                }

                max = MathF.Max(max, sc[j]);
            }

            for (int c = 0; c < Nqc; c++)
            {
                Mx[c] = max;
            }
        }

        /// <summary>Key row <paramref name="walked"/> (then one further), or the last key's row once past it.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static float* NextKeyRow<TR>(ref TR src, ref int walked, ref int runEnd, ref float* row, int nk, int ld)
            where TR : struct, ITileRows
        {
            if (walked < nk)
            {
                if (walked == runEnd)
                {
                    row = src.Key(walked);
                    runEnd = src.RunEnd(walked);
                }
                else
                {
                    row += ld;
                }

                walked++;
            }

            return row;
        }

        /// <summary>
        /// The lone query's probabilities <c>exp(s - m)</c> (lanes = keys, the column path's exp lane by
        /// lane; masked keys give exactly 0), summed in key order into <see cref="Mx"/> as the column
        /// path sums them, and laid out as column 0 of the score tile for the P V product.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void OneQueryProbabilities<TV, TS>(int nk)
            where TV : struct
            where TS : struct, AttentionSimd.IOps<TV>
        {
            float* sc = Scores;
            TV mNew = TS.Splat(M[0]);
            for (int j = 0; j < nk; j += TS.Width)
            {
                TS.Store(sc + j, TS.Exp(TS.Sub(TS.Load(sc + j), mNew)));
            }

            float sum = 0;
            for (int j = 0; j < nk; j++)
            {
                sum += sc[j];
                ST[j * Tile] = sc[j];
            }

            for (int c = 0; c < Nqc; c++)
            {
                Mx[c] = sum;
            }
        }

        /// <summary>
        /// Steps p..p+3 of the scores of 8 keys (lanes): rows r and r + 4 are loaded side by side
        /// (one 128-bit half each), so two shuffle stages give whole columns k[0..7][p].
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void KeysStep4(float** k, int p, float* q, ref Vector256<float> s)
        {
            Vector256<float> r0 = Avx.InsertVector128(Sse.LoadVector128(k[0] + p).ToVector256Unsafe(), Sse.LoadVector128(k[4] + p), 1);
            Vector256<float> r1 = Avx.InsertVector128(Sse.LoadVector128(k[1] + p).ToVector256Unsafe(), Sse.LoadVector128(k[5] + p), 1);
            Vector256<float> r2 = Avx.InsertVector128(Sse.LoadVector128(k[2] + p).ToVector256Unsafe(), Sse.LoadVector128(k[6] + p), 1);
            Vector256<float> r3 = Avx.InsertVector128(Sse.LoadVector128(k[3] + p).ToVector256Unsafe(), Sse.LoadVector128(k[7] + p), 1);
            Vector256<float> t0 = Avx.UnpackLow(r0, r1);
            Vector256<float> t1 = Avx.UnpackHigh(r0, r1);
            Vector256<float> t2 = Avx.UnpackLow(r2, r3);
            Vector256<float> t3 = Avx.UnpackHigh(r2, r3);
            s = Vector256.FusedMultiplyAdd(Avx.Shuffle(t0, t2, 0x44), Vector256.Create(q[0]), s);
            s = Vector256.FusedMultiplyAdd(Avx.Shuffle(t0, t2, 0xEE), Vector256.Create(q[Tile]), s);
            s = Vector256.FusedMultiplyAdd(Avx.Shuffle(t1, t3, 0x44), Vector256.Create(q[2 * Tile]), s);
            s = Vector256.FusedMultiplyAdd(Avx.Shuffle(t1, t3, 0xEE), Vector256.Create(q[3 * Tile]), s);
        }

        /// <summary>
        /// Writes column <paramref name="i"/>'s output row <c>acc_i / l_i</c> (D floats) with any zero
        /// written as +0: a column that sees fewer keys than its 4-column block adds exact zeros
        /// <c>0 * v</c> for the others, which can flip the sign of a zero (and only of a zero), so the
        /// sign is made independent of the block's other columns.
        /// </summary>
        public void Finish<TV, TS>(float* dst, int i)
            where TV : struct
            where TS : struct, AttentionSimd.IOps<TV>
        {
            ScaleCopyPlusZero<TV, TS>(dst, Acc + (i * Dp), D, 1f / L[i]);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Backward
    // ------------------------------------------------------------------------------------------

    /// <summary>
    /// Runs the backward pass in two loops that write disjoint parts of dqkv: one item per
    /// (batch, kv head, key tile) for dK and dV (summing over the group's query heads and all query
    /// tiles in a fixed order), then one item per (batch, query head, query tile) for dQ. Up to
    /// <see cref="MaxFusedTiles"/> tiles the first loop also stores each key tile's share of dQ and
    /// the second only sums the shares in key-tile order; longer sequences recompute P and dS there.
    /// Probabilities are recomputed from lse: P = exp(S * scale - lse).
    /// </summary>
    public static void Backward<TV, TS>(CpuThreadPool pool, AttentionScratch scratch, float* dqkv, float* doutput, float* qkv,
        float* output, float* lse, int b, int t, int hq, int hkv, int d, float scale)
        where TV : struct
        where TS : struct, AttentionSimd.IOps<TV>
    {
        int tiles = (t + Tile - 1) / Tile;
        float* partial = null;
        if (tiles <= MaxFusedTiles)
        {
            partial = scratch.Shared((long)b * hq * (tiles * (tiles + 1) / 2) * Tile * PaddedHead(d));
        }

        var kv = new KeyValueGradWork<TV, TS>
        {
            Scratch = scratch, Dqkv = dqkv, DOut = doutput, Qkv = qkv, Out = output, Lse = lse, Partial = partial,
            B = b, T = t, Hq = hq, Hkv = hkv, D = d, Scale = scale, Tiles = tiles,
        };
        pool.For(b * hkv * tiles, ref kv);

        if (partial != null)
        {
            var sum = new QueryGradSumWork<TV, TS>
            {
                Dqkv = dqkv, Partial = partial, B = b, T = t, Hq = hq, Hkv = hkv, D = d, Scale = scale, Tiles = tiles,
            };
            pool.For(b * hq * tiles, ref sum);
        }
        else
        {
            var q = new QueryGradWork<TV, TS>
            {
                Scratch = scratch, Dqkv = dqkv, DOut = doutput, Qkv = qkv, Out = output, Lse = lse,
                B = b, T = t, Hq = hq, Hkv = hkv, D = d, Scale = scale, Tiles = tiles,
            };
            pool.For(b * hq * tiles, ref q);
        }
    }

    /// <summary>
    /// dK and dV of one key tile of one kv head: dV = P^T dO, dK = scale dS^T Q over the group's heads.
    /// With <see cref="Partial"/> set it also writes this key tile's share dS K of every dQ tile it
    /// touches, so dQ needs only a sum instead of recomputing P and dS.
    /// </summary>
    private struct KeyValueGradWork<TV, TS> : IParallelWork
        where TV : struct
        where TS : struct, AttentionSimd.IOps<TV>
    {
        public AttentionScratch Scratch;
        public float* Dqkv;         // [B, T, (Hq + 2 Hkv) * D]  written: the key and value heads here
        public float* DOut;         // [B, T, Hq*D]
        public float* Qkv;          // [B, T, (Hq + 2 Hkv) * D]
        public float* Out;          // [B, T, Hq*D]
        public float* Lse;          // [B, Hq, T]
        public float* Partial;      // [B, Hq, Tiles(Tiles+1)/2, Tile, Dp] dQ share of (query tile, key tile <= it), or null
        public int B, T, Hq, Hkv, D, Tiles;
        public float Scale;

        public void Execute(int item, int worker)
        {
            // Items of one kv head are adjacent (cache reuse); within it the longest items (the first
            // key tiles, seen by the most queries) come first.
            int kt = item % Tiles;
            int bi = item / Tiles / Hkv, g = item / Tiles % Hkv;
            int rep = Hq / Hkv;
            int d = D, dp = PaddedHead(d), w = TS.Width;
            int stride = (Hq + (2 * Hkv)) * d;
            int outStride = Hq * d;
            float scale = Scale;

            int k0 = kt * Tile;
            int nk = Math.Min(Tile, T - k0);
            int nk4 = RoundUp(nk, 4);
            int nkc = RoundUp(nk, Math.Max(w, 4));

            float* s = Scratch.For(worker);
            float* kT = s;                          // [D, Tile]   keys of this tile, transposed
            float* vT = kT + (d * Tile);            // [D, Tile]   values of this tile, transposed
            float* qTile = vT + (d * Tile);         // [Tile, Dp]  queries of the current query tile (when not read in place)
            float* doTile = qTile + (Tile * dp);    // [Tile, Dp]  output gradients of the current query tile (likewise)
            float* dK = doTile + (Tile * dp);       // [Tile, Dp]  dK accumulator (unscaled)
            float* dV = dK + (Tile * dp);           // [Tile, Dp]  dV accumulator
            float* p = dV + (Tile * dp);            // [Tile, Tile] scores then P, [query, key]
            float* ds = p + (Tile * Tile);          // [Tile, Tile] dP then dS, [query, key]
            float* lseT = ds + (Tile * Tile);       // [Tile]
            float* di = lseT + Tile;                // [Tile] rowsum(dO o O)
            float* kTile = di + Tile;               // [Tile, Dp]  keys of this tile (when not read in place)

            float* qkvBatch = Qkv + ((long)bi * T * stride);
            float* kRows = qkvBatch + ((long)k0 * stride);
            Transpose(kT, Tile, kRows + ((Hq + g) * d), stride, nk, d);
            Transpose(vT, Tile, kRows + ((Hq + Hkv + g) * d), stride, nk, d);
            float* kA = kRows + ((Hq + g) * d);
            int kLd = Partial == null ? 0 : TileRows(ref kA, kTile, stride, nk, d, dp);
            int slots = Tiles * (Tiles + 1) / 2;
            new Span<float>(dK, nk4 * dp).Clear();
            new Span<float>(dV, nk4 * dp).Clear();

            for (int h = g * rep; h < (g + 1) * rep; h++)
            {
                for (int q0 = k0 / Tile * Tile; q0 < T; q0 += Tile)
                {
                    int nq = Math.Min(Tile, T - q0);
                    int nq4 = RoundUp(nq, 4);
                    long row0 = ((long)bi * T) + q0;
                    float* qA = qkvBatch + ((long)q0 * stride) + (h * d);
                    float* doA = DOut + (row0 * outStride) + (h * d);
                    int qLd = TileRows(ref qA, qTile, stride, nq, d, dp);
                    int doLd = TileRows(ref doA, doTile, outStride, nq, d, dp);
                    float* lseRow = Lse + (((long)bi * Hq + h) * T) + q0;
                    for (int i = 0; i < nq; i++)
                    {
                        lseT[i] = lseRow[i];
                        di[i] = Dot<TV, TS>(doA + (i * doLd), Out + ((row0 + i) * outStride) + (h * d), d);
                    }

                    // S = Q K^T and dP = dO V^T for the keys each 4-query block can see.
                    for (int i0 = 0; i0 < nq4; i0 += 4)
                    {
                        int jEnd = Math.Min(nk, q0 + i0 + 4 - k0);
                        if (jEnd > 0)
                        {
                            int cols = RoundUp(jEnd, w);
                            Rows4<TV, TS>(p + (i0 * Tile), Tile, qA + (i0 * qLd), qLd, 1, kT, Tile, d, 0, cols, accumulate: false);
                            Rows4<TV, TS>(ds + (i0 * Tile), Tile, doA + (i0 * doLd), doLd, 1, vT, Tile, d, 0, cols, accumulate: false);
                        }
                    }

                    // P = exp(S scale - lse), dS = P o (dP - Di); masked and padded entries 0.
                    for (int i = 0; i < nq4; i++)
                    {
                        int valid = i < nq ? Math.Clamp(q0 + i - k0 + 1, 0, nk) : 0;
                        float* pRow = p + (i * Tile);
                        float* dsRow = ds + (i * Tile);
                        int c = 0;
                        if (valid > 0)
                        {
                            TV lseV = TS.Splat(lseT[i]);
                            TV diV = TS.Splat(di[i]);
                            TV sc = TS.Splat(scale);
                            for (; c < valid; c += w)
                            {
                                TV pv = TS.Exp(TS.Sub(TS.Mul(TS.Load(pRow + c), sc), lseV));
                                TS.Store(pRow + c, pv);
                                TS.Store(dsRow + c, TS.Mul(pv, TS.Sub(TS.Load(dsRow + c), diV)));
                            }

                            for (int j = valid; j < c; j++)
                            {
                                pRow[j] = 0;
                                dsRow[j] = 0;
                            }
                        }

                        for (; c < nkc; c += w)
                        {
                            TS.Store(pRow + c, TS.Zero);
                            TS.Store(dsRow + c, TS.Zero);
                        }
                    }

                    // This key tile's share of dQ: part[i] = sum_j dS[i, j] k_j (every row of the slot written).
                    if (Partial != null)
                    {
                        int qt = q0 / Tile;
                        float* part = Partial + ((((long)bi * Hq + h) * slots) + (qt * (qt + 1) / 2) + kt) * Tile * dp;
                        for (int i0 = 0; i0 < nq4; i0 += 4)
                        {
                            int jEnd = Math.Clamp(q0 + i0 + 4 - k0, 0, nk);
                            Rows4<TV, TS>(part + (i0 * dp), dp, ds + (i0 * Tile), Tile, 1, kA, kLd, jEnd, 0, dp, accumulate: false);
                        }
                    }

                    // dV[j] += sum_i P[i, j] dO_i and dK[j] += sum_i dS[i, j] q_i, over the queries that see key block j0..j0+3.
                    for (int j0 = 0; j0 < nk4; j0 += 4)
                    {
                        int iStart = Math.Max(0, k0 + j0 - q0);
                        if (iStart < nq)
                        {
                            int kn = nq - iStart;
                            Rows4<TV, TS>(dV + (j0 * dp), dp, p + (iStart * Tile) + j0, 1, Tile, doA + (iStart * doLd), doLd, kn, 0, dp, accumulate: true);
                            Rows4<TV, TS>(dK + (j0 * dp), dp, ds + (iStart * Tile) + j0, 1, Tile, qA + (iStart * qLd), qLd, kn, 0, dp, accumulate: true);
                        }
                    }
                }
            }

            float* dRows = Dqkv + (((long)bi * T + k0) * stride);
            for (int j = 0; j < nk; j++)
            {
                ScaleCopy<TV, TS>(dRows + ((long)j * stride) + ((Hq + g) * d), dK + (j * dp), d, scale);
                ScaleCopy<TV, TS>(dRows + ((long)j * stride) + ((Hq + Hkv + g) * d), dV + (j * dp), d, 1f);
            }
        }
    }

    /// <summary>dQ of one query tile of one query head from the shares the key tiles wrote: summed in key-tile order.</summary>
    private struct QueryGradSumWork<TV, TS> : IParallelWork
        where TV : struct
        where TS : struct, AttentionSimd.IOps<TV>
    {
        public float* Dqkv;         // [B, T, (Hq + 2 Hkv) * D]  written: the query heads here
        public float* Partial;      // [B, Hq, Tiles(Tiles+1)/2, Tile, Dp]
        public int B, T, Hq, Hkv, D, Tiles;
        public float Scale;

        public void Execute(int item, int worker)
        {
            int qt = item % Tiles;
            int bh = item / Tiles;
            int bi = bh / Hq, h = bh % Hq;
            int d = D, dp = PaddedHead(d), w = TS.Width;
            int stride = (Hq + (2 * Hkv)) * d;
            int q0 = qt * Tile;
            int nq = Math.Min(Tile, T - q0);
            int slots = Tiles * (Tiles + 1) / 2;
            float* first = Partial + (((long)bh * slots) + (qt * (qt + 1) / 2)) * Tile * dp;
            float* dRows = Dqkv + ((((long)bi * T) + q0) * stride) + (h * d);
            for (int i = 0; i < nq; i++)
            {
                float* sum = first + (i * dp);
                for (int kt = 1; kt <= qt; kt++)
                {
                    float* share = sum + ((long)kt * Tile * dp);
                    for (int c = 0; c < dp; c += w)
                    {
                        TS.Store(sum + c, TS.Add(TS.Load(sum + c), TS.Load(share + c)));
                    }
                }

                ScaleCopy<TV, TS>(dRows + ((long)i * stride), sum, d, Scale);
            }
        }
    }

    /// <summary>dQ of one query tile of one query head: dQ = scale dS K, summed over key tiles in order (long sequences).</summary>
    private struct QueryGradWork<TV, TS> : IParallelWork
        where TV : struct
        where TS : struct, AttentionSimd.IOps<TV>
    {
        public AttentionScratch Scratch;
        public float* Dqkv;         // [B, T, (Hq + 2 Hkv) * D]  written: the query heads here
        public float* DOut;         // [B, T, Hq*D]
        public float* Qkv;          // [B, T, (Hq + 2 Hkv) * D]
        public float* Out;          // [B, T, Hq*D]
        public float* Lse;          // [B, Hq, T]
        public int B, T, Hq, Hkv, D, Tiles;
        public float Scale;

        public void Execute(int item, int worker)
        {
            int qt = Tiles - 1 - (item % Tiles);
            int bh = item / Tiles;
            int bi = bh / Hq, h = bh % Hq;
            int g = h / (Hq / Hkv);
            int d = D, dp = PaddedHead(d), w = TS.Width;
            int stride = (Hq + (2 * Hkv)) * d;
            int outStride = Hq * d;
            float scale = Scale;

            int q0 = qt * Tile;
            int nq = Math.Min(Tile, T - q0);
            int nq4 = RoundUp(nq, 4);
            int nqc = RoundUp(nq, Math.Max(w, 4));

            float* s = Scratch.For(worker);
            float* qT = s;                          // [D, Tile]   queries of this tile, transposed
            float* doT = qT + (d * Tile);           // [D, Tile]   output gradients of this tile, transposed
            float* kTile = doT + (d * Tile);        // [Tile, Dp]  keys of the current key tile (when not read in place)
            float* vTile = kTile + (Tile * dp);     // [Tile, Dp]  values of the current key tile (likewise)
            float* dQ = vTile + (Tile * dp);        // [Tile, Dp]  dQ accumulator (unscaled)
            float* sT = dQ + (Tile * dp);           // [Tile, Tile] scores, [key, query]
            float* dsT = sT + (Tile * Tile);        // [Tile, Tile] dP then dS, [key, query]
            float* lseT = dsT + (Tile * Tile);      // [Tile] (0 past the tile's queries)
            float* di = lseT + Tile;                // [Tile] rowsum(dO o O) (0 past the tile's queries)

            float* qkvBatch = Qkv + ((long)bi * T * stride);
            long row0 = ((long)bi * T) + q0;
            Transpose(qT, Tile, qkvBatch + ((long)q0 * stride) + (h * d), stride, nq, d);
            Transpose(doT, Tile, DOut + (row0 * outStride) + (h * d), outStride, nq, d);
            float* lseRow = Lse + (((long)bi * Hq + h) * T) + q0;
            for (int i = 0; i < Tile; i++)
            {
                lseT[i] = i < nq ? lseRow[i] : 0;
                di[i] = i < nq ? Dot<TV, TS>(DOut + ((row0 + i) * outStride) + (h * d), Out + ((row0 + i) * outStride) + (h * d), d) : 0;
            }

            new Span<float>(dQ, nq4 * dp).Clear();
            TV sc = TS.Splat(scale);
            int kEnd = q0 + nq;
            for (int k0 = 0; k0 < kEnd; k0 += Tile)
            {
                int nk = Math.Min(Tile, kEnd - k0);
                int nk4 = RoundUp(nk, 4);
                float* kRows = qkvBatch + ((long)k0 * stride);
                float* kA = kRows + ((Hq + g) * d), vA = kRows + ((Hq + Hkv + g) * d);
                int ld = TileRows(ref kA, ref vA, kTile, vTile, stride, nk, d, dp);

                // S^T = K Q^T and dP^T = V dO^T, skipping leading columns no key of the block is visible to.
                for (int j0 = 0; j0 < nk4; j0 += 4)
                {
                    int c0 = Math.Max(0, k0 + j0 - q0) / w * w;
                    if (c0 < nqc)
                    {
                        Rows4<TV, TS>(sT + (j0 * Tile), Tile, kA + (j0 * ld), ld, 1, qT, Tile, d, c0, nqc, accumulate: false);
                        Rows4<TV, TS>(dsT + (j0 * Tile), Tile, vA + (j0 * ld), ld, 1, doT, Tile, d, c0, nqc, accumulate: false);
                    }
                }

                // dS^T[j, i] = P (dP - Di) with P = exp(S scale - lse_i); masked entries 0.
                for (int j = 0; j < nk; j++)
                {
                    int first = Math.Max(0, k0 + j - q0);
                    float* sRow = sT + (j * Tile);
                    float* dsRow = dsT + (j * Tile);
                    int c = 0;
                    for (; c + w <= first; c += w)
                    {
                        TS.Store(dsRow + c, TS.Zero);
                    }

                    for (; c < nqc; c += w)
                    {
                        TV pv = TS.Exp(TS.Sub(TS.Mul(TS.Load(sRow + c), sc), TS.Load(lseT + c)));
                        TS.Store(dsRow + c, TS.Mul(pv, TS.Sub(TS.Load(dsRow + c), TS.Load(di + c))));
                        for (int i = c; i < first; i++)
                        {
                            dsRow[i] = 0;
                        }
                    }
                }

                // dQ[i] += sum_j dS[i, j] k_j over the keys query block i0..i0+3 can see.
                for (int i0 = 0; i0 < nq4; i0 += 4)
                {
                    int jEnd = Math.Min(nk, q0 + i0 + 4 - k0);
                    if (jEnd > 0)
                    {
                        Rows4<TV, TS>(dQ + (i0 * dp), dp, dsT + i0, 1, Tile, kA, ld, jEnd, 0, dp, accumulate: true);
                    }
                }
            }

            float* dRows = Dqkv + (row0 * stride) + (h * d);
            for (int i = 0; i < nq; i++)
            {
                ScaleCopy<TV, TS>(dRows + ((long)i * stride), dQ + (i * dp), d, scale);
            }
        }
    }
}

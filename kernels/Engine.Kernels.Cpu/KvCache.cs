using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Engine.Core;
using static Engine.Kernels.Cpu.AttentionSimd;

namespace Engine.Kernels.Cpu;

// Paged KV cache: writing rows' keys and values into their slots, and attention of query rows over
// the cache. The cache is [blocks, layers, 2, Hkv, blockSize, D] (see KvCacheShape): for one block,
// layer, half (keys, values) and kv head the positions of the block are blockSize consecutive rows
// of D floats.
//
// Paged attention runs the training forward's own tile routine (CpuAttention.ForwardTiles): the
// query columns of a tile are the heads of one kv group of up to Tile / group rows of one sequence,
// the key tiles are positions 0..63, 64..127, ... of that sequence, read in its blocks (or gathered
// from them when a 4-key block could straddle two cache blocks or D is not whole vectors). Every
// column's arithmetic is the training forward's for a query at the same position, so the output row
// of a query at position t is bit-identical to AttentionForward's for that query in a full causal
// sequence, whatever the batch (prefill, decode, sequences mixed) or the thread count.
internal sealed unsafe partial class CpuAccelerator
{
    /// <summary>Below this many floats a cache write runs on the calling thread only.</summary>
    private const long ParallelWriteFloats = 1 << 16;

    private PagedAttentionPlan? pagedAttentionPlan;

    protected override void KvCacheWriteCore(Tensor cache, Tensor qkv, Tensor slots, int n, int heads, int layer, in KvCacheShape shape)
    {
        int* slot = I(slots);  // [N]
        long slotCount = (long)shape.Blocks * shape.BlockSize;
        for (int i = 0; i < n; i++)
        {
            if ((ulong)slot[i] >= (ulong)slotCount)
            {
                throw new ArgumentOutOfRangeException(nameof(slots), slot[i], $"slot of row {i} must be in [0, {slotCount})");
            }
        }

        var work = new KvCacheWriteWork
        {
            Cache = F(cache), Qkv = F(qkv), Slots = slot,
            Hq = heads, Hkv = shape.KvHeads, D = shape.HeadDim, BlockSize = shape.BlockSize,
            BlockLength = shape.BlockLength, LayerOffset = (long)layer * 2 * shape.KvHeads * shape.BlockSize * shape.HeadDim,
        };
        if ((long)n * 2 * shape.KvHeads * shape.HeadDim >= ParallelWriteFloats)
        {
            Pool.For(n, ref work);
        }
        else
        {
            for (int i = 0; i < n; i++)
            {
                work.Execute(i, 0);
            }
        }
    }

    protected override void PagedAttentionCore(Tensor output, Tensor qkv, Tensor cache, Tensor blockTables, Tensor rowSeq, Tensor rowPos,
        int n, int maxBlocks, int heads, int layer, in KvCacheShape shape, float scale)
    {
        pagedAttentionPlan ??= new PagedAttentionPlan();
        PagedAttentionPlan plan = pagedAttentionPlan;
        plan.Build(I(blockTables), (int)Math.Min(int.MaxValue, blockTables.Length / maxBlocks), I(rowSeq), I(rowPos), n, maxBlocks, heads, shape);
        AttentionScratch scratch = AttentionScratchFor(CpuAttention.ScratchFloats(shape.HeadDim));
        float* o = F(output), q = F(qkv), c = F(cache);
        int* tables = I(blockTables), seq = I(rowSeq), pos = I(rowPos);
        if (Vector512.IsHardwareAccelerated)
        {
            CpuPagedAttention.Forward<Vector512<float>, V512>(Pool, scratch, plan, o, q, c, tables, seq, pos, maxBlocks, heads, layer, shape, scale);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            CpuPagedAttention.Forward<Vector256<float>, V256>(Pool, scratch, plan, o, q, c, tables, seq, pos, maxBlocks, heads, layer, shape, scale);
        }
        else
        {
            CpuPagedAttention.Forward<float, Scalar>(Pool, scratch, plan, o, q, c, tables, seq, pos, maxBlocks, heads, layer, shape, scale);
        }
    }

    /// <summary>Copies one row's Hkv key heads and Hkv value heads into its cache slot.</summary>
    private struct KvCacheWriteWork : IParallelWork
    {
        public float* Cache;        // [blocks, layers, 2, Hkv, blockSize, D]
        public float* Qkv;          // [N, (Hq + 2 Hkv) D]
        public int* Slots;          // [N]
        public int Hq, Hkv, D, BlockSize;
        public long BlockLength, LayerOffset;

        public readonly void Execute(int item, int worker)
        {
            int d = D, bs = BlockSize;
            int slot = Slots[item];
            float* row = Qkv + ((long)item * (Hq + (2 * Hkv)) * d);
            float* keys = Cache + ((long)(slot / bs) * BlockLength) + LayerOffset + ((long)(slot % bs) * d);  // head 0, keys
            long half = (long)Hkv * bs * d;  // keys to values
            long bytes = 4L * d;
            for (int g = 0; g < Hkv; g++)
            {
                float* dst = keys + ((long)g * bs * d);
                Buffer.MemoryCopy(row + ((Hq + g) * d), dst, bytes, bytes);
                Buffer.MemoryCopy(row + ((Hq + Hkv + g) * d), dst + half, bytes, bytes);
            }
        }
    }
}

/// <summary>
/// How one paged-attention call is cut into work items, built on the calling thread: runs of
/// consecutive rows of one sequence, at most <c>Tile / group</c> rows each, every run's rows in
/// position order. Also validates the rows' sequences, positions and block ids. Arrays are kept
/// and grown for later calls.
/// </summary>
internal sealed unsafe class PagedAttentionPlan
{
    private int[] order = [];
    private int[] chunkStart = [];
    private int[] chunkCount = [];

    /// <summary>Runs in the last <see cref="Build"/>.</summary>
    public int Chunks { get; private set; }

    /// <summary>Query heads of one group that share an item (the group, capped at a tile).</summary>
    public int HeadsPerItem { get; private set; }

    /// <summary>Items per (run, kv head): the group split into parts of <see cref="HeadsPerItem"/>.</summary>
    public int HeadParts { get; private set; }

    /// <summary>Row indices, each run's rows sorted by position (stable).</summary>
    public int* Order => (int*)Unsafe.AsPointer(ref order[0]);

    /// <summary>First entry of each run in <see cref="Order"/>.</summary>
    public int* ChunkStart => (int*)Unsafe.AsPointer(ref chunkStart[0]);

    /// <summary>Rows of each run.</summary>
    public int* ChunkCount => (int*)Unsafe.AsPointer(ref chunkCount[0]);

    /// <summary>Cuts <paramref name="n"/> rows into runs and checks every index the kernel will follow.</summary>
    public void Build(int* blockTables, int sequences, int* rowSeq, int* rowPos, int n, int maxBlocks, int heads, in KvCacheShape shape)
    {
        if (order.Length < n)
        {
            order = GC.AllocateArray<int>(n, pinned: true);
            chunkStart = GC.AllocateArray<int>(n, pinned: true);
            chunkCount = GC.AllocateArray<int>(n, pinned: true);
        }

        int group = heads / shape.KvHeads;
        HeadsPerItem = Math.Min(group, CpuAttention.Tile);
        HeadParts = (group + HeadsPerItem - 1) / HeadsPerItem;
        int rowsPerItem = Math.Max(1, CpuAttention.Tile / HeadsPerItem);
        int bs = shape.BlockSize;
        int* ord = Order;
        int chunks = 0;
        for (int i = 0; i < n;)
        {
            int seq = rowSeq[i];
            if ((uint)seq >= (uint)sequences)
            {
                throw new ArgumentOutOfRangeException("rowSeq", seq, $"sequence of row {i} must be in [0, {sequences})");
            }

            int start = i, maxPos = 0;
            for (; i < n && rowSeq[i] == seq && i - start < rowsPerItem; i++)
            {
                int p = rowPos[i];
                if (p < 0 || p / bs >= maxBlocks)
                {
                    throw new ArgumentOutOfRangeException("rowPos", p, $"position of row {i} must be in [0, {(long)maxBlocks * bs})");
                }

                // Insertion sort by position (stable): runs are short and usually sorted already.
                int k = i;
                while (k > start && rowPos[ord[k - 1]] > p)
                {
                    ord[k] = ord[k - 1];
                    k--;
                }

                ord[k] = i;
                maxPos = Math.Max(maxPos, p);
            }

            int* table = blockTables + ((long)seq * maxBlocks);
            for (int b = 0; b <= maxPos / bs; b++)
            {
                if ((uint)table[b] >= (uint)shape.Blocks)
                {
                    throw new ArgumentOutOfRangeException("blockTables", table[b], $"block {b} of sequence {seq} must be in [0, {shape.Blocks})");
                }
            }

            chunkStart[chunks] = start;
            chunkCount[chunks] = i - start;
            chunks++;
        }

        Chunks = chunks;
    }
}

/// <summary>
/// Attention of query rows over a paged KV cache through <see cref="CpuAttention.ForwardTiles"/>,
/// the training forward's tile routine: one work item per (run of rows, kv head, part of the group).
/// </summary>
internal static unsafe class CpuPagedAttention
{
    private const int Tile = CpuAttention.Tile;

    /// <summary>Runs every item of <paramref name="plan"/> (built for the same rows).</summary>
    public static void Forward<TV, TS>(CpuThreadPool pool, AttentionScratch scratch, PagedAttentionPlan plan,
        float* output, float* qkv, float* cache, int* blockTables, int* rowSeq, int* rowPos,
        int maxBlocks, int heads, int layer, in KvCacheShape shape, float scale)
        where TV : struct
        where TS : struct, IOps<TV>
    {
        var work = new PagedWork<TV, TS>
        {
            Scratch = scratch, Output = output, Qkv = qkv, Cache = cache, BlockTables = blockTables, RowSeq = rowSeq, RowPos = rowPos,
            Order = plan.Order, ChunkStart = plan.ChunkStart, ChunkCount = plan.ChunkCount,
            HeadsPerItem = plan.HeadsPerItem, HeadParts = plan.HeadParts, MaxBlocks = maxBlocks,
            Hq = heads, Hkv = shape.KvHeads, D = shape.HeadDim, BlockSize = shape.BlockSize,
            BlockLength = shape.BlockLength, LayerOffset = (long)layer * 2 * shape.KvHeads * shape.BlockSize * shape.HeadDim,
            Scale = scale,
        };
        pool.For(plan.Chunks * shape.KvHeads * plan.HeadParts, ref work);
    }

    private struct PagedWork<TV, TS> : IParallelWork
        where TV : struct
        where TS : struct, IOps<TV>
    {
        public AttentionScratch Scratch;
        public float* Output;       // [N, Hq D]
        public float* Qkv;          // [N, (Hq + 2 Hkv) D]
        public float* Cache;        // [blocks, layers, 2, Hkv, blockSize, D]
        public int* BlockTables;    // [S, MaxBlocks]
        public int* RowSeq;         // [N]
        public int* RowPos;         // [N]
        public int* Order;          // [N] rows, each run sorted by position
        public int* ChunkStart;     // [runs]
        public int* ChunkCount;     // [runs]
        public int HeadsPerItem, HeadParts, MaxBlocks, Hq, Hkv, D, BlockSize;
        public long BlockLength, LayerOffset;
        public float Scale;

        public void Execute(int item, int worker)
        {
            int part = item % HeadParts;
            int g = item / HeadParts % Hkv;
            int chunk = item / HeadParts / Hkv;
            int group = Hq / Hkv;
            int h0 = (g * group) + (part * HeadsPerItem);
            int nh = Math.Min(HeadsPerItem, group - (part * HeadsPerItem));
            int start = ChunkStart[chunk], rows = ChunkCount[chunk];
            int d = D, dp = CpuAttention.PaddedHead(d), bs = BlockSize;
            int stride = (Hq + (2 * Hkv)) * d;
            int nq = rows * nh;

            int* table = BlockTables + ((long)RowSeq[Order[start]] * MaxBlocks);
            float* layerBase = Cache + LayerOffset + ((long)g * bs * d);  // add block * BlockLength: keys of head g

            // The first 16 key rows come from memory (decode reads each once per step): they are fetched
            // while the columns and queries are laid out; the lone-query score loop prefetches the rest.
            if (Sse.IsSupported)
            {
                int firstKeys = Math.Min(16, RowPos[Order[start + rows - 1]] + 1);
                for (int j = 0; j < firstKeys; j++)
                {
                    float* key = layerBase + ((long)table[j / bs] * BlockLength) + ((long)(j % bs) * d);
                    for (int c = 0; c < d; c += 16)
                    {
                        Sse.Prefetch0(key + c);
                    }
                }
            }

            var f = new CpuAttention.ForwardTiles(Scratch.For(worker), d, nq, TS.Width);
            int* pos = f.Spare;             // [Tile] position of each column (non-decreasing)
            int* first = pos + Tile;        // [Tile] per key of the current tile: first column that sees it
            int* colRow = first + Tile;     // [Tile] row of each column
            int* colHead = colRow + Tile;   // [Tile] query head of each column

            // Columns: the run's rows in position order, each row's heads of this part of the group.
            int col = 0;
            for (int r = 0; r < rows; r++)
            {
                int row = Order[start + r];
                for (int hh = 0; hh < nh; hh++)
                {
                    pos[col] = RowPos[row];
                    colRow[col] = row;
                    colHead[col] = h0 + hh;
                    col++;
                }
            }

            // qT[k, i] = q_i[k], unused columns zero.
            float* qT = f.QT;
            for (int i = 0; i < nq; i++)
            {
                float* q = Qkv + ((long)colRow[i] * stride) + (colHead[i] * d);
                for (int k = 0; k < d; k++)
                {
                    qT[(k * Tile) + i] = q[k];
                }
            }

            for (int k = 0; k < d; k++)
            {
                new Span<float>(qT + (k * Tile) + nq, f.Nqc - nq).Clear();  // the products read columns up to Nqc only
            }

            f.Begin();
            long half = (long)Hkv * bs * d;                               // keys to values
            var columns = new PagedColumns { Pos = pos, FirstCol = first, Count = nq };
            int kEnd = pos[nq - 1] + 1;
            bool inPlace = bs % 4 == 0 && d == dp;
            for (int k0 = 0; k0 < kEnd; k0 += Tile)
            {
                int nk = Math.Min(Tile, kEnd - k0);
                for (int j = 0, c = 0; j < nk; j++)
                {
                    while (c < nq && pos[c] < k0 + j)
                    {
                        c++;
                    }

                    first[j] = c;
                }

                columns.K0 = k0;

                // Keys and values of positions k0..k0+nk-1: read in the blocks when every 4-row block
                // of keys lies in one cache block and D is whole vectors, else gathered block by
                // block into zero-padded [Tile, Dp] tiles.
                if (inPlace)
                {
                    var blockRows = new BlockRows { Table = table, Base = layerBase, BlockLength = BlockLength, Half = half, K0 = k0, BlockSize = bs, Ld = d };
                    f.KeyTile<TV, TS, PagedColumns, BlockRows>(ref blockRows, k0, nk, Scale, ref columns);
                    continue;
                }

                for (int j = 0; j < nk;)
                {
                    int p = k0 + j;
                    int take = Math.Min(nk - j, bs - (p % bs));
                    float* src = layerBase + ((long)table[p / bs] * BlockLength) + ((long)(p % bs) * d);
                    CopyRowsPadded(f.KTile + (j * dp), dp, src, d, take, take, d);
                    CopyRowsPadded(f.VTile + (j * dp), dp, src + half, d, take, take, d);
                    j += take;
                }

                int nk4 = RoundUp(nk, 4);
                new Span<float>(f.KTile + (nk * dp), (nk4 - nk) * dp).Clear();
                new Span<float>(f.VTile + (nk * dp), (nk4 - nk) * dp).Clear();
                f.KeyTile<TV, TS, PagedColumns>(f.KTile, f.VTile, dp, k0, nk, Scale, ref columns);
            }

            for (int i = 0; i < nq; i++)
            {
                f.Finish<TV, TS>(Output + ((long)colRow[i] * Hq * d) + (colHead[i] * d), i);
            }
        }
    }

    /// <summary>A key tile read in the cache blocks of one sequence (block size a multiple of 4, D whole vectors): one run per block.</summary>
    private struct BlockRows : CpuAttention.ITileRows
    {
        public int* Table;          // [MaxBlocks] the sequence's block ids
        public float* Base;         // keys of this layer and kv head in block 0
        public long BlockLength;    // floats per block
        public long Half;           // keys to values
        public int K0, BlockSize;

        public int Ld { readonly get; set; }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly float* Key(int j)
        {
            int p = K0 + j;
            return Base + ((long)Table[p / BlockSize] * BlockLength) + ((long)(p % BlockSize) * Ld);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly float* Value(int j) => Key(j) + Half;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly int RunEnd(int j) => j + BlockSize - ((K0 + j) % BlockSize);
    }

    /// <summary>Columns at arbitrary non-decreasing positions; <see cref="First"/> holds the current key tile's first visible column per key.</summary>
    private struct PagedColumns : CpuAttention.IForwardColumns
    {
        public int* Pos;        // [Count] column positions
        public int* FirstCol;   // [nk] per key of the tile at K0
        public int K0, Count;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly int First(int key) => FirstCol[key - K0];

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly int KeyEnd(int i0) => Pos[Math.Min(i0 + 3, Count - 1)] + 1;
    }
}

using Engine.Core;
using Engine.Model;

namespace Engine.Generation;

/// <summary>One sequence's view of the paged cache: its block table and how many positions it holds.</summary>
internal sealed class KvSequence
{
    /// <summary>Block ids in position order.</summary>
    public List<int> Blocks { get; } = [];

    /// <summary>Positions written (the next token goes to position <see cref="Length"/>).</summary>
    public int Length { get; internal set; }

    /// <summary>True once released back to the pool.</summary>
    public bool Released { get; internal set; }
}

/// <summary>
/// The paged KV cache: a pool of fixed-size blocks on the device (all layers' keys and values of
/// <see cref="KvCacheShape.BlockSize"/> positions per block), a free list, and reference counts so
/// sequences forked from one prompt share the prompt's blocks. A shared, partly filled last block is
/// copied when a sequence first writes into it (copy on write). Bookkeeping is on the host; the
/// only device work is the block copy.
/// </summary>
internal sealed class PagedKvCache : IDisposable
{
    private readonly Accelerator acc;
    private readonly int[] refCounts;
    private readonly Stack<int> free;

    public PagedKvCache(Accelerator acc, ModelConfig config, int blocks, int blockSize)
    {
        if (blocks <= 0 || blockSize <= 0)
        {
            throw new EngineException($"the KV cache needs at least one block of at least one position (got {blocks} blocks of {blockSize})");
        }

        this.acc = acc;
        Shape = new KvCacheShape(blocks, config.Layers, config.KvHeads, config.HeadDim, blockSize);
        Buffer = acc.Allocate(Shape.Length);
        Binding = new KvCacheBinding(Buffer, Shape);
        refCounts = new int[blocks];
        free = new Stack<int>(Enumerable.Range(0, blocks).Reverse());
    }

    public KvCacheShape Shape { get; }

    public DeviceBuffer Buffer { get; }

    public KvCacheBinding Binding { get; }

    /// <summary>Bytes of one block.</summary>
    public long BlockBytes => Shape.BlockLength * sizeof(float);

    /// <summary>Blocks in the pool.</summary>
    public int TotalBlocks => Shape.Blocks;

    /// <summary>Blocks on the free list.</summary>
    public int FreeBlocks => free.Count;

    /// <summary>Blocks held by at least one sequence.</summary>
    public int UsedBlocks => TotalBlocks - FreeBlocks;

    /// <summary>Bytes of the blocks in use.</summary>
    public long BytesInUse => UsedBlocks * BlockBytes;

    /// <summary>Largest <see cref="BytesInUse"/> so far.</summary>
    public long PeakBytes { get; private set; }

    /// <summary>Starts a new peak at the bytes in use now (each generation call measures its own).</summary>
    public void ResetPeak() => PeakBytes = BytesInUse;

    /// <summary>Blocks copied on write so far.</summary>
    public int CopiesOnWrite { get; private set; }

    /// <summary>How many blocks of a model's cache fit in <paramref name="budgetBytes"/>.</summary>
    public static int BlocksForBudget(ModelConfig config, long budgetBytes, int blockSize)
    {
        long perBlock = (long)config.Layers * 2 * config.KvHeads * blockSize * config.HeadDim * sizeof(float);
        return (int)Math.Min(int.MaxValue, budgetBytes / perBlock);
    }

    /// <summary>Blocks needed to hold <paramref name="positions"/> positions.</summary>
    public int BlocksFor(int positions) => (positions + Shape.BlockSize - 1) / Shape.BlockSize;

    /// <summary>A new, empty sequence.</summary>
    public static KvSequence NewSequence() => new();

    /// <summary>A sequence that shares every block of <paramref name="parent"/> (the parent stays valid).</summary>
    public KvSequence Fork(KvSequence parent)
    {
        ObjectDisposedException.ThrowIf(parent.Released, parent);
        var child = new KvSequence { Length = parent.Length };
        foreach (int block in parent.Blocks)
        {
            refCounts[block]++;
            child.Blocks.Add(block);
        }

        return child;
    }

    /// <summary>
    /// Makes room for the next position of <paramref name="seq"/> and returns its slot
    /// (<c>block * blockSize + offset</c>): takes a new block when the last one is full, and copies
    /// a shared, partly filled last block before the first write into it.
    /// </summary>
    public int AppendSlot(KvSequence seq)
    {
        ObjectDisposedException.ThrowIf(seq.Released, seq);
        int bs = Shape.BlockSize;
        int offset = seq.Length % bs;
        if (offset == 0)
        {
            seq.Blocks.Add(Take());
        }
        else
        {
            int last = seq.Blocks[^1];
            if (refCounts[last] > 1)
            {
                int copy = Take();
                acc.Copy(Buffer.Slice(copy * Shape.BlockLength, Shape.BlockLength), Buffer.Slice(last * Shape.BlockLength, Shape.BlockLength));
                refCounts[last]--;
                seq.Blocks[^1] = copy;
                CopiesOnWrite++;
            }
        }

        int slot = seq.Blocks[^1] * bs + offset;
        seq.Length++;
        return slot;
    }

    /// <summary>Drops a sequence's references; blocks nobody holds return to the free list.</summary>
    public void Release(KvSequence seq)
    {
        if (seq.Released)
        {
            return;
        }

        seq.Released = true;
        foreach (int block in seq.Blocks)
        {
            if (--refCounts[block] == 0)
            {
                free.Push(block);
            }
        }

        seq.Blocks.Clear();
    }

    public void Dispose() => Buffer.Dispose();

    private int Take()
    {
        if (free.Count == 0)
        {
            throw new InvalidOperationException("the KV cache is out of blocks (the scheduler's reservation should prevent this)");
        }

        int block = free.Pop();
        refCounts[block] = 1;
        PeakBytes = Math.Max(PeakBytes, BytesInUse);
        return block;
    }
}

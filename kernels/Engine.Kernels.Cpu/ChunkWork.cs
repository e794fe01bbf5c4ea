using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Engine.Kernels.Cpu;

/// <summary>
/// A kernel body over a contiguous range of a 1-D index space (elements, rows or columns). A struct
/// of pointers and scalars, so the JIT specialises <see cref="ChunkWork{T}"/> and inlines the body.
/// </summary>
internal interface IChunkKernel
{
    /// <summary>Processes indices [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>).</summary>
    void Run(long start, long count);
}

/// <summary>
/// Splits [0, Count) into fixed chunks of <see cref="Chunk"/> indices, one pool item per chunk. The
/// chunking depends only on the sizes, never on the thread count, so a kernel whose chunk writes a
/// disjoint part of the output (or its own slot of a partial-sum scratch) is deterministic.
/// </summary>
internal struct ChunkWork<T> : IParallelWork where T : struct, IChunkKernel
{
    /// <summary>The body.</summary>
    public T Kernel;

    /// <summary>Size of the index space.</summary>
    public long Count;

    /// <summary>Indices per item.</summary>
    public long Chunk;

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Execute(int item, int worker)
    {
        long start = item * Chunk;
        Kernel.Run(start, Math.Min(Chunk, Count - start));
    }
}

internal sealed unsafe partial class CpuAccelerator
{
    /// <summary>Elements per work item of the element-wise kernels (a multiple of every vector width).</summary>
    internal const long ElementChunk = 32 * 1024;

    /// <summary>
    /// Elements per work item of element-wise kernels that cost an exp and a divide per element (GELU):
    /// small enough that a decode step's few rows still reach every thread.
    /// </summary>
    internal const long ExpElementChunk = 8 * 1024;

    /// <summary>
    /// Elements per work item of a copy or a clear (512 KiB): a memset of the gradients of a large
    /// model is hundreds of MB a step, which one core cannot stream alone.
    /// </summary>
    internal const long MemoryChunk = 128 * 1024;

    /// <summary>Target elements per work item of the row-wise kernels (rows per item = this / row length).</summary>
    internal const long RowChunkElements = 16 * 1024;

    /// <summary>
    /// Scratch of the deterministic reductions (per-chunk partial sums), grown on demand and kept: a
    /// pinned array, so the GC frees it with the accelerator and no call after the first allocates.
    /// </summary>
    private byte[]? reductionScratch;

    /// <summary>Rows per work item for rows of <paramref name="rowLength"/> elements.</summary>
    internal static long RowsPerItem(long rowLength) => Math.Max(1, RowChunkElements / Math.Max(1, rowLength));

    /// <summary>
    /// Runs <paramref name="kernel"/> over [0, <paramref name="count"/>) in chunks of
    /// <paramref name="chunk"/>; a single chunk runs on the calling thread.
    /// </summary>
    internal void RunChunks<T>(long count, long chunk, in T kernel) where T : struct, IChunkKernel
    {
        long items = (count + chunk - 1) / chunk;
        if (items <= 1)
        {
            T body = kernel;
            body.Run(0, count);
            return;
        }

        var work = new ChunkWork<T> { Kernel = kernel, Count = count, Chunk = chunk };
        Pool.For(checked((int)items), ref work);
    }

    /// <summary>
    /// At least <paramref name="bytes"/> bytes of scratch, valid until the next call (ops do not
    /// run concurrently on one accelerator). Contents are undefined.
    /// </summary>
    internal void* ReductionScratch(long bytes)
    {
        if (reductionScratch is null || reductionScratch.LongLength < bytes)
        {
            long size = Math.Max(bytes, Math.Max(4096, (reductionScratch?.LongLength ?? 0) * 2));
            reductionScratch = GC.AllocateUninitializedArray<byte>(checked((int)size), pinned: true);
        }

        return Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(reductionScratch));
    }
}

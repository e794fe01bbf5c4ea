using Engine.Core;

namespace Engine.Kernels.Cuda;

// Paged KV cache write and paged attention; kernels in Kernels/KvCache.cu. Paged attention runs one
// block per (query head, row) over the row's cached positions (any head size: the query and
// the output accumulator live in dynamic shared memory, sized at launch).
internal sealed partial class CudaAccelerator
{
    protected override void KvCacheWriteCore(Tensor cache, Tensor qkv, Tensor slots, int n, int heads, int layer, in KvCacheShape shape)
    {
        long layerOffset = (long)layer * 2 * shape.KvHeads * shape.BlockSize * shape.HeadDim;
        KernelArgs args = Args(CudaKernel.KvCacheWrite).Tensor(cache).Tensor(qkv).Tensor(slots)
            .Int(n).Int(heads).Int(shape.KvHeads).Int(shape.HeadDim).Int(shape.BlockSize)
            .Long(shape.BlockLength).Long(layerOffset).Long((long)shape.Blocks * shape.BlockSize);
        Run(args, shape.HeadDim, 2 * shape.KvHeads, GridRows(n), Math.Min(Wg, 32), 1, 1);
    }

    protected override void PagedAttentionCore(Tensor output, Tensor qkv, Tensor cache, Tensor blockTables, Tensor rowSeq, Tensor rowPos,
        int n, int maxBlocks, int heads, int layer, in KvCacheShape shape, float scale)
    {
        int d = shape.HeadDim;
        long layerOffset = (long)layer * 2 * shape.KvHeads * shape.BlockSize * d;
        int sequences = (int)Math.Min(int.MaxValue, blockTables.Length / maxBlocks);
        KernelArgs args = Args(CudaKernel.PagedAttention).Tensor(output).Tensor(qkv).Tensor(cache).Tensor(blockTables).Tensor(rowSeq)
            .Tensor(rowPos)
            .Int(heads).Int(shape.KvHeads).Int(d).Int(shape.BlockSize).Long(shape.BlockLength).Long(layerOffset).Int(maxBlocks)
            .Int(sequences).Int(shape.Blocks).Float(scale);
        Run(args, (long)heads * Wg, n, 1, Wg, 1, 1, 2 * d * sizeof(float));  // shared: q [D], acc [D]
    }
}

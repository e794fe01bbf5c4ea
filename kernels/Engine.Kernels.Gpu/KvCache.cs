using Engine.Core;

namespace Engine.Kernels.Gpu;

// Paged KV cache write and paged attention; kernels in Kernels/KvCache.h. Paged attention runs one
// work-group per (query head, row) over the row's cached positions (any head size: the query and
// the output accumulator live in local memory: __local arguments in OpenCL, dynamic shared memory
// in CUDA; see KernelArgs.Local).
internal abstract partial class GpuAccelerator
{
    protected override void KvCacheWriteCore(Tensor cache, Tensor qkv, Tensor slots, int n, int heads, int layer, in KvCacheShape shape)
    {
        long layerOffset = (long)layer * 2 * shape.KvHeads * shape.BlockSize * shape.HeadDim;
        KernelArgs args = Args(GpuKernel.KvCacheWrite).Tensor(cache).Tensor(qkv).Tensor(slots)
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
        long stride = (long)(heads + (2 * shape.KvHeads)) * d;
        int step = GridStep(n);
        for (int first = 0; first < n; first += step)
        {
            // Rows first .. first + rows - 1 (a row's output depends on its own query and the cache only).
            int rows = Math.Min(step, n - first);
            KernelArgs args = Args(GpuKernel.PagedAttention).Tensor(output.Slice((long)first * heads * d, (long)rows * heads * d))
                .Tensor(qkv.Slice(first * stride, rows * stride)).Tensor(cache).Tensor(blockTables).Tensor(rowSeq.Slice(first, rows))
                .Tensor(rowPos.Slice(first, rows)).Local((long)d * sizeof(float)).Local((long)d * sizeof(float))
                .Int(heads).Int(shape.KvHeads).Int(d).Int(shape.BlockSize).Long(shape.BlockLength).Long(layerOffset).Int(maxBlocks)
                .Int(sequences).Int(shape.Blocks).Float(scale);
            Run(args, (long)heads * Wg, rows, Wg, 1);
        }
    }
}

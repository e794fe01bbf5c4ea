using Engine.Core;

namespace Engine.Kernels.Cpu;

internal sealed unsafe partial class CpuAccelerator
{
    protected override void KvCacheWriteCore(Tensor cache, Tensor qkv, Tensor slots, int n, int heads, int layer, in KvCacheShape shape) =>
        throw new NotSupportedException("pending");

    protected override void PagedAttentionCore(Tensor output, Tensor qkv, Tensor cache, Tensor blockTables, Tensor rowSeq, Tensor rowPos,
        int n, int maxBlocks, int heads, int layer, in KvCacheShape shape, float scale) => throw new NotSupportedException("pending");
}

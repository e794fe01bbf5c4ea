namespace Engine.Core;

/// <summary>
/// Geometry of a paged KV cache. The cache buffer is <c>[blocks, layers, 2, Hkv, blockSize, D]</c>:
/// each block holds <see cref="BlockSize"/> consecutive positions of one sequence for every layer,
/// keys then values, so a block is one contiguous range (copy-on-write copies it whole).
/// A slot is <c>block * blockSize + offset</c>.
/// </summary>
/// <param name="Blocks">Blocks in the pool.</param>
/// <param name="Layers">Transformer layers L.</param>
/// <param name="KvHeads">Key/value heads Hkv.</param>
/// <param name="HeadDim">Head size D.</param>
/// <param name="BlockSize">Positions per block.</param>
internal readonly record struct KvCacheShape(int Blocks, int Layers, int KvHeads, int HeadDim, int BlockSize)
{
    /// <summary>Floats in one block (all layers, keys and values).</summary>
    public long BlockLength => (long)Layers * 2 * KvHeads * BlockSize * HeadDim;

    /// <summary>Floats in the whole pool.</summary>
    public long Length => Blocks * BlockLength;
}

internal abstract partial class Accelerator
{
    /// <summary>
    /// Writes the key and value heads of <paramref name="n"/> rows of <paramref name="qkv"/>
    /// (layout as for attention: Hq query heads, then Hkv keys, then Hkv values) into their cache
    /// slots for one layer.
    /// </summary>
    /// <param name="cache">The pool, <see cref="KvCacheShape.Length"/> floats.</param>
    /// <param name="qkv">[N, (Hq + 2Hkv) D] rows whose k/v are stored.</param>
    /// <param name="slots">[N] slot of each row (<c>block * blockSize + offset</c>).</param>
    /// <param name="n">Rows N.</param>
    /// <param name="heads">Query heads Hq (to find k and v within a row).</param>
    /// <param name="layer">Layer whose part of the block is written.</param>
    /// <param name="shape">Cache geometry.</param>
    public void KvCacheWrite(Tensor cache, Tensor qkv, Tensor slots, int n, int heads, int layer, in KvCacheShape shape)
    {
        CheckKv(cache, n, heads, layer, shape);
        Check(qkv, nameof(qkv), minLength: (long)n * (heads + 2 * shape.KvHeads) * shape.HeadDim);
        Check(slots, nameof(slots), DType.I32, n);
        using (Profile("KvCacheWrite"))
        {
            KvCacheWriteCore(cache, qkv, slots, n, heads, layer, shape);
        }
    }

    /// <summary>
    /// Attention of <paramref name="n"/> query rows over the paged cache of one layer: row i
    /// belongs to sequence <c>rowSeq[i]</c> and sits at position <c>rowPos[i]</c>; it attends the
    /// cached positions 0..rowPos[i] of its sequence, found through that sequence's block table.
    /// Serves prefill (many rows of one sequence) and decode (one row per sequence) alike; the rows'
    /// own keys and values must already be written with <see cref="KvCacheWrite"/>.
    /// </summary>
    /// <param name="output">[N, Hq D] attention output.</param>
    /// <param name="qkv">[N, (Hq + 2Hkv) D] rows; only the query heads are read.</param>
    /// <param name="cache">The pool.</param>
    /// <param name="blockTables">[S, maxBlocks] block ids of each sequence, in position order.</param>
    /// <param name="rowSeq">[N] sequence (row of <paramref name="blockTables"/>) of each query row.</param>
    /// <param name="rowPos">[N] position of each query row.</param>
    /// <param name="n">Rows N.</param>
    /// <param name="maxBlocks">Columns of <paramref name="blockTables"/>.</param>
    /// <param name="heads">Query heads Hq.</param>
    /// <param name="layer">Layer to read.</param>
    /// <param name="shape">Cache geometry.</param>
    /// <param name="scale">Score scale, usually 1/sqrt(D).</param>
    public void PagedAttention(Tensor output, Tensor qkv, Tensor cache, Tensor blockTables, Tensor rowSeq, Tensor rowPos,
        int n, int maxBlocks, int heads, int layer, in KvCacheShape shape, float scale)
    {
        CheckKv(cache, n, heads, layer, shape);
        CheckPositive(maxBlocks, nameof(maxBlocks));
        Check(output, nameof(output), minLength: (long)n * heads * shape.HeadDim);
        Check(qkv, nameof(qkv), minLength: (long)n * (heads + 2 * shape.KvHeads) * shape.HeadDim);
        Check(blockTables, nameof(blockTables), DType.I32, maxBlocks);
        Check(rowSeq, nameof(rowSeq), DType.I32, n);
        Check(rowPos, nameof(rowPos), DType.I32, n);
        using (Profile("PagedAttention"))
        {
            PagedAttentionCore(output, qkv, cache, blockTables, rowSeq, rowPos, n, maxBlocks, heads, layer, shape, scale);
        }
    }

    protected abstract void KvCacheWriteCore(Tensor cache, Tensor qkv, Tensor slots, int n, int heads, int layer, in KvCacheShape shape);

    protected abstract void PagedAttentionCore(Tensor output, Tensor qkv, Tensor cache, Tensor blockTables, Tensor rowSeq, Tensor rowPos,
        int n, int maxBlocks, int heads, int layer, in KvCacheShape shape, float scale);

    private void CheckKv(Tensor cache, int n, int heads, int layer, in KvCacheShape shape)
    {
        CheckPositive(n, nameof(n));
        CheckPositive(heads, nameof(heads));
        CheckPositive(shape.Blocks, "blocks");
        CheckPositive(shape.BlockSize, "blockSize");
        CheckPositive(shape.KvHeads, "kvHeads");
        CheckPositive(shape.HeadDim, "headDim");
        if (heads % shape.KvHeads != 0)
        {
            throw new ArgumentException($"query heads ({heads}) must be a multiple of key/value heads ({shape.KvHeads})");
        }

        if ((uint)layer >= (uint)shape.Layers)
        {
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [0, {shape.Layers})");
        }

        Check(cache, nameof(cache), minLength: shape.Length);
    }
}

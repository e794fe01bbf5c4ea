// KvCache.cl: the paged KV cache: writing rows' keys and values into their slots, and attention of
// query rows over the cache.
//
// Cache layout [blocks, layers, 2, Hkv, blockSize, D]: for one block, layer, half (keys, values) and
// kv head, the block's positions are blockSize consecutive rows of D floats. A slot is
// block * blockSize + offset. Indices the CPU backend validates on the host (slots, sequences,
// positions, block ids) are checked here on the device: a bad one never reads or writes outside
// the cache; the row's write is skipped, or its attention output is NaN.

// Copies row i's Hkv key heads and Hkv value heads into its slot; global (D, 2 Hkv, N).
__kernel void kv_cache_write(__global float* cache, ulong cacheOff,       // [blocks, layers, 2, Hkv, bs, D]
                             __global const float* qkv, ulong qkvOff,     // [N, (Hq + 2Hkv) D]
                             __global const int* slots, ulong slotOff,    // [N]
                             int n, int hq, int hkv, int d, int bs, long blockLength, long layerOffset, long slotCount)
{
    const int e = get_global_id(0), kh = get_global_id(1), i = get_global_id(2);
    if (e >= d || kh >= 2 * hkv || i >= n)
    {
        return;
    }
    const int slot = slots[slotOff + i];
    if (slot < 0 || slot >= slotCount)
    {
        return;
    }
    // kh < hkv: key head kh; else value head kh - hkv. Both in the row and in the block they follow each other.
    const float v = qkv[qkvOff + (long)i * (hq + 2 * hkv) * d + (long)(hq + kh) * d + e];
    cache[cacheOff + (long)(slot / bs) * blockLength + layerOffset + ((long)kh * bs + slot % bs) * d + e] = v;
}

// Attention of query row i, head h over positions 0..rowPos[i] of sequence rowSeq[i], read through
// the sequence's block table; one work-group of WG work-items per (head, row). Keys are taken in
// tiles of WG (work-item j scores key k0 + j), with an online softmax across tiles; the P V sum
// runs with the work-items over the head dimension. Local memory: q [D], acc [D] (arguments).
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void paged_attention(__global float* out, ulong outOff,              // [N, Hq D]
                     __global const float* qkv, ulong qkvOff,        // [N, (Hq + 2Hkv) D]
                     __global const float* cache, ulong cacheOff,    // the pool
                     __global const int* tables, ulong tablesOff,    // [S, maxBlocks]
                     __global const int* rowSeq, ulong seqOff,       // [N]
                     __global const int* rowPos, ulong posOff,       // [N]
                     __local float* qS, __local float* accS,         // [D], [D]
                     int hq, int hkv, int d, int bs, long blockLength, long layerOffset, int maxBlocks,
                     int sequences, int blocks, float scale)
{
    __local float pS[WG];
    __local float red[WG];
    const int h = get_group_id(0), i = get_group_id(1);
    const int lid = get_local_id(0);
    const int g = h / (hq / hkv);
    const int seq = rowSeq[seqOff + i];
    const int valid = seq >= 0 && seq < sequences && rowPos[posOff + i] >= 0 && rowPos[posOff + i] < maxBlocks * bs;
    // An invalid row runs no key tile and writes NaN. (No early return: PoCL mishandles a return
    // ahead of a barrier even when the whole work-group takes it.)
    const int pos = valid ? rowPos[posOff + i] : -1;
    __global float* o = out + outOff + (long)i * hq * d + (long)h * d;
    __global const int* table = tables + tablesOff + (long)max(seq, 0) * maxBlocks;
    cache += cacheOff + layerOffset + (long)g * bs * d;   // key head g of block 0; values are hkv * bs * d further
    const long valueShift = (long)hkv * bs * d;
    for (int e = lid; e < d; e += WG)
    {
        qS[e] = qkv[qkvOff + (long)i * (hq + 2 * hkv) * d + (long)h * d + e];
        accS[e] = 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float m = -INFINITY, l = 0.0f;
    int bad = 0;
    for (int k0 = 0; k0 <= pos; k0 += WG)
    {
        const int p = k0 + lid;
        float s = -INFINITY;
        if (p <= pos)
        {
            const int blk = table[p / bs];
            if (blk < 0 || blk >= blocks)
            {
                s = NAN;
            }
            else
            {
                __global const float* key = cache + (long)blk * blockLength + (long)(p % bs) * d;
                float dot = 0.0f;
                for (int e = 0; e < d; e++)
                {
                    dot = fma(qS[e], key[e], dot);
                }
                s = dot * scale;
            }
        }
        const float mt = wg_max_n(s, red, WG);
        bad |= isnan(mt);                        // a bad block id: the output is NaN (uniform over the group)
        const float mn = bad ? 0.0f : fmax(m, mt);
        const float alpha = bad ? 0.0f : exp(m - mn);
        const float pe = (p <= pos && !bad) ? exp(s - mn) : 0.0f;
        pS[lid] = pe;
        l = l * alpha + wg_sum_n(pe, red, WG);   // the sum's barriers also publish pS
        const int nk = bad ? 0 : min(WG, pos - k0 + 1);
        for (int e = lid; e < d; e += WG)
        {
            float a = accS[e] * alpha;
            for (int j = 0; j < nk; j++)
            {
                const int pj = k0 + j;
                __global const float* value = cache + (long)table[pj / bs] * blockLength + valueShift + (long)(pj % bs) * d;
                a = fma(pS[j], value[e], a);
            }
            accS[e] = a;
        }
        m = mn;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float inv = 1.0f / l;
    for (int e = lid; e < d; e += WG)
    {
        o[e] = (bad || !valid) ? NAN : accS[e] * inv;
    }
}

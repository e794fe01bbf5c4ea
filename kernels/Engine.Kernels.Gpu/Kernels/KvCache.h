// KvCache.h: the paged KV cache: writing rows' keys and values into their slots, and attention of
// query rows over the cache.
//
// Cache layout [blocks, layers, 2, Hkv, blockSize, D]: for one block, layer, half (keys, values) and
// kv head, the block's positions are blockSize consecutive rows of D floats. A slot is
// block * blockSize + offset. Indices the CPU backend validates on the host (slots, sequences,
// positions, block ids) are checked here on the device: a bad one never reads or writes outside
// the cache; the row's write is skipped, or its attention output is NaN.

// Copies row i's Hkv key heads and Hkv value heads into its slot; global (D, 2 Hkv, N),
// rows looped.
KERNEL void kv_cache_write(GLOBAL float* cache, u64 cacheOff,    // [blocks, layers, 2, Hkv, bs, D]
                           GLOBAL const float* qkv, u64 qkvOff,  // [N, (Hq + 2Hkv) D]
                           GLOBAL const int* slots, u64 slotOff, // [N]
                           int n, int hq, int hkv, int d, int bs, i64 blockLength, i64 layerOffset, i64 slotCount)
{
    const int e = GLOBAL_ID(0), kh = GLOBAL_ID(1);
    if (e >= d || kh >= 2 * hkv)
    {
        return;
    }
    for (int i = GLOBAL_ID(2); i < n; i += GLOBAL_SIZE(2))
    {
        const int slot = slots[slotOff + i];
        if (slot < 0 || slot >= slotCount)
        {
            continue;
        }
        // kh < hkv: key head kh; else value head kh - hkv. Both in the row and in the block they follow each other.
        const float v = qkv[qkvOff + (i64)i * (hq + 2 * hkv) * d + (i64)(hq + kh) * d + e];
        cache[cacheOff + (i64)(slot / bs) * blockLength + layerOffset + ((i64)kh * bs + slot % bs) * d + e] = v;
    }
}

// Attention of query row i, head h over positions 0..rowPos[i] of sequence rowSeq[i], read through
// the sequence's block table; one work-group of WG work-items per (head, row). Keys are taken in
// tiles of WG (work-item j scores key k0 + j), with an online softmax across tiles; the P V sum
// runs with the work-items over the head dimension. Local memory sized by the host at launch:
// q [D], acc [D] (OpenCL: two __local arguments; CUDA: the dynamic shared memory, 2 D floats).
KERNEL_WG(WG, 1, 1)
void paged_attention(GLOBAL float* out, u64 outOff,           // [N, Hq D]
                     GLOBAL const float* qkv, u64 qkvOff,     // [N, (Hq + 2Hkv) D]
                     GLOBAL const float* cache, u64 cacheOff, // the pool
                     GLOBAL const int* tables, u64 tablesOff, // [S, maxBlocks]
                     GLOBAL const int* rowSeq, u64 seqOff,    // [N]
                     GLOBAL const int* rowPos, u64 posOff,    // [N]
                     DYNAMIC_LOCAL_ARG(float, qS)             // [D]
                     DYNAMIC_LOCAL_ARG(float, accS)              // [D]
                     int hq, int hkv, int d, int bs, i64 blockLength, i64 layerOffset, int maxBlocks,
                     int sequences, int blocks, float scale)
{
    DYNAMIC_LOCAL(float, qS, 0);
    DYNAMIC_LOCAL(float, accS, d);
    SHARED float pS[WG];
    SHARED float red[WG];
    const int h = GROUP_ID(0), i = GROUP_ID(1);
    const int lid = LOCAL_ID(0);
    const int g = h / (hq / hkv);
    const int seq = rowSeq[seqOff + i];
    const int valid = seq >= 0 && seq < sequences && rowPos[posOff + i] >= 0 && rowPos[posOff + i] < maxBlocks * bs;
    // An invalid row runs no key tile and writes NaN. (No early return: PoCL mishandles a return
    // ahead of a barrier even when the whole work-group takes it.)
    const int pos = valid ? rowPos[posOff + i] : -1;
    GLOBAL float* o = out + outOff + (i64)i * hq * d + (i64)h * d;
    GLOBAL const int* table = tables + tablesOff + (i64)max(seq, 0) * maxBlocks;
    cache += cacheOff + layerOffset + (i64)g * bs * d;   // key head g of block 0; values are hkv * bs * d further
    const i64 valueShift = (i64)hkv * bs * d;
    for (int e = lid; e < d; e += WG)
    {
        qS[e] = qkv[qkvOff + (i64)i * (hq + 2 * hkv) * d + (i64)h * d + e];
        accS[e] = 0.0f;
    }
    BARRIER();
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
                GLOBAL const float* key = cache + (i64)blk * blockLength + (i64)(p % bs) * d;
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
                GLOBAL const float* value = cache + (i64)table[pj / bs] * blockLength + valueShift + (i64)(pj % bs) * d;
                a = fma(pS[j], value[e], a);
            }
            accS[e] = a;
        }
        m = mn;
        BARRIER();
    }
    const float inv = 1.0f / l;
    for (int e = lid; e < d; e += WG)
    {
        o[e] = (bad || !valid) ? NAN : accS[e] * inv;
    }
}

// Embedding.h: token (+ learned position) embedding, forward and backward.
//
// The CPU backend rejects out-of-range ids on the host; here the ids live on the device, so a
// kernel never reads or writes outside a table: an invalid id gives a NaN row in the forward
// (visible downstream) and is skipped in the backward.

// out[i, j] = wte[tokens[i], j] (+ wpe[positions[i], j]); global (C, N), rows looped.
KERNEL void embedding_forward(GLOBAL float* out, u64 outOff,           // [N, C]
                              GLOBAL const int* tokens, u64 tokOff,    // [N]
                              GLOBAL const int* positions, u64 posOff, // [N] when hasWpe
                              GLOBAL const float* wte, u64 wteOff,     // [V, C]
                              GLOBAL const float* wpe, u64 wpeOff,     // [P, C] when hasWpe
                              int hasWpe, int n, int c, i64 vRows, i64 pRows)
{
    const int j = GLOBAL_ID(0);
    if (j >= c)
    {
        return;
    }
    out += outOff;
    tokens += tokOff;
    positions += posOff;
    wte += wteOff;
    wpe += wpeOff;
    for (int i = GLOBAL_ID(1); i < n; i += GLOBAL_SIZE(1))
    {
        const int t = tokens[i];
        float v = NAN;
        if (t >= 0 && t < vRows)
        {
            v = wte[(i64)t * c + j];
            if (hasWpe)
            {
                const int p = positions[i];
                v = (p >= 0 && p < pRows) ? v + wpe[(i64)p * c + j] : NAN;
            }
        }
        out[(i64)i * c + j] = v;
    }
}

// dwte[tokens[i], j] += dout[i, j] (and dwpe[positions[i], j] += dout[i, j]) for i = 0..N-1 in
// order. Several rows may hit one table row, so the work is split by column: work-item j owns
// column j of every table row (no races, no atomics, rows summed in order); global (C).
KERNEL void embedding_backward(GLOBAL float* dwte, u64 dwteOff,         // [V, C] accumulated
                               GLOBAL float* dwpe, u64 dwpeOff,         // [P, C] accumulated when hasWpe
                               GLOBAL const float* dout, u64 doutOff,   // [N, C]
                               GLOBAL const int* tokens, u64 tokOff,    // [N]
                               GLOBAL const int* positions, u64 posOff, // [N] when hasWpe
                               int hasWpe, int n, int c, i64 vRows, i64 pRows)
{
    const int j = GLOBAL_ID(0);
    if (j >= c)
    {
        return;
    }
    dwte += dwteOff;
    dwpe += dwpeOff;
    dout += doutOff;
    tokens += tokOff;
    positions += posOff;
    for (int i = 0; i < n; i++)
    {
        const float g = dout[(i64)i * c + j];
        const int t = tokens[i];
        if (t >= 0 && t < vRows)
        {
            dwte[(i64)t * c + j] += g;
        }
        if (hasWpe)
        {
            const int p = positions[i];
            if (p >= 0 && p < pRows)
            {
                dwpe[(i64)p * c + j] += g;
            }
        }
    }
}

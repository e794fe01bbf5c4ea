// Embedding.cl: token (+ learned position) embedding, forward and backward.
//
// The CPU backend rejects out-of-range ids on the host; here the ids live on the device, so a
// kernel never reads or writes outside a table: an invalid id gives a NaN row in the forward
// (visible downstream) and is skipped in the backward.

// out[i, j] = wte[tokens[i], j] (+ wpe[positions[i], j]); global (C, N).
__kernel void embedding_forward(__global float* out, ulong outOff,             // [N, C]
                                __global const int* tokens, ulong tokOff,      // [N]
                                __global const int* positions, ulong posOff,   // [N] when hasWpe
                                __global const float* wte, ulong wteOff,       // [V, C]
                                __global const float* wpe, ulong wpeOff,       // [P, C] when hasWpe
                                int hasWpe, int n, int c, long vRows, long pRows)
{
    const int j = get_global_id(0), i = get_global_id(1);
    if (j >= c || i >= n)
    {
        return;
    }
    out += outOff;
    tokens += tokOff;
    positions += posOff;
    wte += wteOff;
    wpe += wpeOff;
    const int t = tokens[i];
    float v = NAN;
    if (t >= 0 && t < vRows)
    {
        v = wte[(long)t * c + j];
        if (hasWpe)
        {
            const int p = positions[i];
            v = (p >= 0 && p < pRows) ? v + wpe[(long)p * c + j] : NAN;
        }
    }
    out[(long)i * c + j] = v;
}

// dwte[tokens[i], j] += dout[i, j] (and dwpe[positions[i], j] += dout[i, j]) for i = 0..N-1 in
// order. Several rows may hit one table row, so the work is split by column: work-item j owns
// column j of every table row (no races, no atomics, rows summed in order); global (C).
__kernel void embedding_backward(__global float* dwte, ulong dwteOff,          // [V, C] accumulated
                                 __global float* dwpe, ulong dwpeOff,          // [P, C] accumulated when hasWpe
                                 __global const float* dout, ulong doutOff,    // [N, C]
                                 __global const int* tokens, ulong tokOff,     // [N]
                                 __global const int* positions, ulong posOff,  // [N] when hasWpe
                                 int hasWpe, int n, int c, long vRows, long pRows)
{
    const int j = get_global_id(0);
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
        const float g = dout[(long)i * c + j];
        const int t = tokens[i];
        if (t >= 0 && t < vRows)
        {
            dwte[(long)t * c + j] += g;
        }
        if (hasWpe)
        {
            const int p = positions[i];
            if (p >= 0 && p < pRows)
            {
                dwpe[(long)p * c + j] += g;
            }
        }
    }
}

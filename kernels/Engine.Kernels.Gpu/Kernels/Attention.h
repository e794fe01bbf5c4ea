// Attention.h: causal grouped-query self-attention, flash style (no [T, T] matrix is stored).
//
// Layout: qkv [B, T, (Hq + 2 Hkv) D] (per row Hq query heads, Hkv key heads, Hkv value heads);
// output [B, T, Hq D]; lse [B, Hq, T]. Query head h reads key/value head h / (Hq / Hkv).
// Compiled per head size: HEAD_DIM (D) and ATT_TILE (queries per work-group and keys per tile)
// come from the host, so the per-query vectors live in private memory.
//
// Forward: one work-group of ATT_TILE work-items per (query tile, head, batch); work-item i owns
// query q0 + i. Key/value tiles are staged in local memory; each work-item keeps a running max m,
// sum l and unnormalised output (online softmax) and finally writes out = acc / l and
// lse = m + log l.
// Backward (recomputing P = exp(S scale - lse)): Di = rowsum(dO o O) first; then one pass per
// (key tile, kv head, batch) for dK and dV, each work-item owning one key and summing over the
// group's query heads and the query tiles in order; then one pass per (query tile, head, batch)
// for dQ. Every element of dqkv is written by exactly one work-item; no atomics.

#ifndef HEAD_DIM
#error "HEAD_DIM must be defined"
#endif
#ifndef ATT_TILE
#define ATT_TILE 32
#endif
#define D HEAD_DIM

KERNEL_WG(ATT_TILE, 1, 1)
void attention_forward(GLOBAL float* out, u64 outOff,       // [B, T, Hq D]
                       GLOBAL float* lse, u64 lseOff,       // [B, Hq, T]
                       GLOBAL const float* qkv, u64 qkvOff, // [B, T, (Hq + 2Hkv) D]
                       int T, int Hq, int Hkv, float scale)
{
    SHARED float Ks[ATT_TILE * D];
    SHARED float Vs[ATT_TILE * D];
    const int qt = GROUP_ID(0), h = GROUP_ID(1), b = GROUP_ID(2);
    const int lid = LOCAL_ID(0);
    const int W = (Hq + 2 * Hkv) * D;
    const int g = h / (Hq / Hkv);
    const int q0 = qt * ATT_TILE, qi = q0 + lid;
    const int valid = qi < T;
    GLOBAL const float* base = qkv + qkvOff + (i64)b * T * W;

    float q[D], acc[D];
    for (int d = 0; d < D; d++)
    {
        q[d] = valid ? base[(i64)qi * W + h * D + d] : 0.0f;
        acc[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int lastKey = min(q0 + ATT_TILE, T) - 1;
    for (int k0 = 0; k0 <= lastKey; k0 += ATT_TILE)
    {
        BARRIER();
        for (int idx = lid; idx < ATT_TILE * D; idx += ATT_TILE)
        {
            const int j = idx / D, d = idx % D, kj = k0 + j;
            float kv = 0.0f, vv = 0.0f;
            if (kj < T)
            {
                kv = base[(i64)kj * W + (Hq + g) * D + d];
                vv = base[(i64)kj * W + (Hq + Hkv + g) * D + d];
            }
            Ks[idx] = kv;
            Vs[idx] = vv;
        }
        BARRIER();
        const int nk = valid ? min(ATT_TILE, qi - k0 + 1) : 0;   // keys k0 .. min(qi, k0 + tile - 1)
        if (nk > 0)
        {
            float s[ATT_TILE];
            float mt = -INFINITY;
            for (int j = 0; j < nk; j++)
            {
                float dot = 0.0f;
                for (int d = 0; d < D; d++)
                {
                    dot = fma(q[d], Ks[j * D + d], dot);
                }
                s[j] = dot * scale;
                mt = fmax(mt, s[j]);
            }
            const float mn = fmax(m, mt);
            const float alpha = exp(m - mn);
            l *= alpha;
            for (int d = 0; d < D; d++)
            {
                acc[d] *= alpha;
            }
            for (int j = 0; j < nk; j++)
            {
                const float p = exp(s[j] - mn);
                l += p;
                for (int d = 0; d < D; d++)
                {
                    acc[d] = fma(p, Vs[j * D + d], acc[d]);
                }
            }
            m = mn;
        }
    }
    if (valid)
    {
        GLOBAL float* o = out + outOff + ((i64)b * T + qi) * Hq * D + h * D;
        const float inv = 1.0f / l;
        for (int d = 0; d < D; d++)
        {
            o[d] = acc[d] * inv;
        }
        lse[lseOff + ((i64)b * Hq + h) * T + qi] = m + log(l);
    }
}

// Di[b, h, t] = sum_d dO[b, t, h, d] * O[b, t, h, d]; global (T, Hq, B).
KERNEL void attention_backward_di(GLOBAL float* di,                    // [B, Hq, T]
                                  GLOBAL const float* dout, u64 doOff, // [B, T, Hq D]
                                  GLOBAL const float* out, u64 oOff,   // [B, T, Hq D]
                                  int T, int Hq)
{
    const int t = GLOBAL_ID(0), h = GLOBAL_ID(1), b = GLOBAL_ID(2);
    if (t >= T)
    {
        return;
    }
    const i64 at = ((i64)b * T + t) * Hq * D + h * D;
    float s = 0.0f;
    for (int d = 0; d < D; d++)
    {
        s = fma(dout[doOff + at + d], out[oOff + at + d], s);
    }
    di[((i64)b * Hq + h) * T + t] = s;
}

// dK and dV of one key tile of one kv head: work-item j owns key k0 + j;
// dV_j = sum_i P_ij dO_i and dK_j = scale sum_i dS_ij q_i with dS = P o (dO V^T - Di), over the
// group's query heads (in order) and the queries i >= j (query tiles in order).
KERNEL_WG(ATT_TILE, 1, 1)
void attention_backward_dkdv(GLOBAL float* dqkv, u64 dqkvOff,     // [B, T, (Hq + 2Hkv) D] written: key and value heads
                             GLOBAL const float* dout, u64 doOff, // [B, T, Hq D]
                             GLOBAL const float* qkv, u64 qkvOff, // [B, T, (Hq + 2Hkv) D]
                             GLOBAL const float* lse, u64 lseOff, // [B, Hq, T]
                             GLOBAL const float* di,              // [B, Hq, T]
                             int T, int Hq, int Hkv, float scale)
{
    SHARED float Qs[ATT_TILE * D];
    SHARED float dOs[ATT_TILE * D];
    SHARED float lseS[ATT_TILE];
    SHARED float diS[ATT_TILE];
    const int kt = GROUP_ID(0), g = GROUP_ID(1), b = GROUP_ID(2);
    const int lid = LOCAL_ID(0);
    const int W = (Hq + 2 * Hkv) * D;
    const int group = Hq / Hkv;
    const int k0 = kt * ATT_TILE, kj = k0 + lid;
    const int valid = kj < T;
    GLOBAL const float* base = qkv + qkvOff + (i64)b * T * W;

    float k[D], v[D], dk[D], dv[D];
    for (int d = 0; d < D; d++)
    {
        k[d] = valid ? base[(i64)kj * W + (Hq + g) * D + d] : 0.0f;
        v[d] = valid ? base[(i64)kj * W + (Hq + Hkv + g) * D + d] : 0.0f;
        dk[d] = 0.0f;
        dv[d] = 0.0f;
    }
    for (int hh = 0; hh < group; hh++)
    {
        const int h = g * group + hh;
        for (int q0 = k0; q0 < T; q0 += ATT_TILE)
        {
            BARRIER();
            for (int idx = lid; idx < ATT_TILE * D; idx += ATT_TILE)
            {
                const int i = idx / D, d = idx % D, qi = q0 + i;
                float qv = 0.0f, dov = 0.0f;
                if (qi < T)
                {
                    qv = base[(i64)qi * W + h * D + d];
                    dov = dout[doOff + ((i64)b * T + qi) * Hq * D + h * D + d];
                }
                Qs[idx] = qv;
                dOs[idx] = dov;
            }
            {
                const int qi = q0 + lid;
                lseS[lid] = qi < T ? lse[lseOff + ((i64)b * Hq + h) * T + qi] : 0.0f;
                diS[lid] = qi < T ? di[((i64)b * Hq + h) * T + qi] : 0.0f;
            }
            BARRIER();
            if (valid)
            {
                const int first = max(0, kj - q0);             // queries before the key do not see it
                const int last = min(ATT_TILE, T - q0);
                for (int i = first; i < last; i++)
                {
                    float sdot = 0.0f, pdot = 0.0f;
                    for (int d = 0; d < D; d++)
                    {
                        sdot = fma(Qs[i * D + d], k[d], sdot);
                        pdot = fma(dOs[i * D + d], v[d], pdot);
                    }
                    const float p = exp(sdot * scale - lseS[i]);
                    const float ds = p * (pdot - diS[i]);
                    for (int d = 0; d < D; d++)
                    {
                        dv[d] = fma(p, dOs[i * D + d], dv[d]);
                        dk[d] = fma(ds, Qs[i * D + d], dk[d]);
                    }
                }
            }
        }
    }
    if (valid)
    {
        GLOBAL float* row = dqkv + dqkvOff + ((i64)b * T + kj) * W;
        for (int d = 0; d < D; d++)
        {
            row[(Hq + g) * D + d] = dk[d] * scale;
            row[(Hq + Hkv + g) * D + d] = dv[d];
        }
    }
}

// dQ of one query tile of one head: work-item i owns query q0 + i; dQ_i = scale sum_{j <= i} dS_ij k_j,
// key tiles in order.
KERNEL_WG(ATT_TILE, 1, 1)
void attention_backward_dq(GLOBAL float* dqkv, u64 dqkvOff,     // [B, T, (Hq + 2Hkv) D] written: query heads
                           GLOBAL const float* dout, u64 doOff, // [B, T, Hq D]
                           GLOBAL const float* qkv, u64 qkvOff, // [B, T, (Hq + 2Hkv) D]
                           GLOBAL const float* lse, u64 lseOff, // [B, Hq, T]
                           GLOBAL const float* di,              // [B, Hq, T]
                           int T, int Hq, int Hkv, float scale)
{
    SHARED float Ks[ATT_TILE * D];
    SHARED float Vs[ATT_TILE * D];
    const int qt = GROUP_ID(0), h = GROUP_ID(1), b = GROUP_ID(2);
    const int lid = LOCAL_ID(0);
    const int W = (Hq + 2 * Hkv) * D;
    const int g = h / (Hq / Hkv);
    const int q0 = qt * ATT_TILE, qi = q0 + lid;
    const int valid = qi < T;
    GLOBAL const float* base = qkv + qkvOff + (i64)b * T * W;

    float q[D], dO[D], dq[D];
    for (int d = 0; d < D; d++)
    {
        q[d] = valid ? base[(i64)qi * W + h * D + d] : 0.0f;
        dO[d] = valid ? dout[doOff + ((i64)b * T + qi) * Hq * D + h * D + d] : 0.0f;
        dq[d] = 0.0f;
    }
    const float lseI = valid ? lse[lseOff + ((i64)b * Hq + h) * T + qi] : 0.0f;
    const float diI = valid ? di[((i64)b * Hq + h) * T + qi] : 0.0f;
    const int lastKey = min(q0 + ATT_TILE, T) - 1;
    for (int k0 = 0; k0 <= lastKey; k0 += ATT_TILE)
    {
        BARRIER();
        for (int idx = lid; idx < ATT_TILE * D; idx += ATT_TILE)
        {
            const int j = idx / D, d = idx % D, kj = k0 + j;
            float kv = 0.0f, vv = 0.0f;
            if (kj < T)
            {
                kv = base[(i64)kj * W + (Hq + g) * D + d];
                vv = base[(i64)kj * W + (Hq + Hkv + g) * D + d];
            }
            Ks[idx] = kv;
            Vs[idx] = vv;
        }
        BARRIER();
        const int nk = valid ? min(ATT_TILE, qi - k0 + 1) : 0;
        for (int j = 0; j < nk; j++)
        {
            float sdot = 0.0f, pdot = 0.0f;
            for (int d = 0; d < D; d++)
            {
                sdot = fma(q[d], Ks[j * D + d], sdot);
                pdot = fma(dO[d], Vs[j * D + d], pdot);
            }
            const float p = exp(sdot * scale - lseI);
            const float ds = p * (pdot - diI);
            for (int d = 0; d < D; d++)
            {
                dq[d] = fma(ds, Ks[j * D + d], dq[d]);
            }
        }
    }
    if (valid)
    {
        GLOBAL float* row = dqkv + dqkvOff + ((i64)b * T + qi) * W + h * D;
        for (int d = 0; d < D; d++)
        {
            row[d] = dq[d] * scale;
        }
    }
}

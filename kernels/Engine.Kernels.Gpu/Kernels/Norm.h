// Norm.h: LayerNorm (GPT-2) and RMSNorm (Llama/Qwen2), forward and backward.
//
// Forward and the dx part of the backward: one work-group (WG work-items) per row; row sums in
// acc_t with a fixed tree order. The weight/bias gradients are sums over rows: rows are cut into
// chunks of chunkRows (a function of N only), norm_weight_partials writes each chunk's column sums
// into its own row of a partial buffer, and norm_column_reduce adds the chunks in order. No atomics.

// LayerNorm forward: mean = sum(x)/C, var = sum((x - mean)^2)/C (biased), rstd = 1/sqrt(var + eps),
// out = (x - mean) * rstd * w + b. One work-group per row.
KERNEL_WG(WG, 1, 1)
void layernorm_forward(GLOBAL float* out, u64 outOff,   // [N, C]
                       GLOBAL float* mean, u64 meanOff, // [N]
                       GLOBAL float* rstd, u64 rstdOff, // [N]
                       GLOBAL const float* x, u64 xOff, // [N, C]
                       GLOBAL const float* w, u64 wOff, // [C]
                       GLOBAL const float* b, u64 bOff, // [C] when hasBias
                       int hasBias, int c, float eps)
{
    SHARED acc_t red[WG];
    const i64 row = GROUP_ID(0);
    const int lid = LOCAL_ID(0);
    x += xOff + row * c;
    out += outOff + row * c;
    w += wOff;
    b += bOff;
    acc_t s = 0;
    for (int j = lid; j < c; j += WG)
    {
        s += x[j];
    }
    const acc_t mu = wg_sum(s, red) / c;
    acc_t q = 0;
    for (int j = lid; j < c; j += WG)
    {
        const acc_t d = x[j] - mu;
        q += d * d;
    }
    const acc_t var = wg_sum(q, red) / c;
    const float m = (float)mu;
    const float rs = (float)((acc_t)1 / sqrt(var + eps));
    if (lid == 0)
    {
        mean[meanOff + row] = m;
        rstd[rstdOff + row] = rs;
    }
    for (int j = lid; j < c; j += WG)
    {
        const float xh = (x[j] - m) * rs;
        out[j] = fma(xh, w[j], hasBias ? b[j] : 0.0f);
    }
}

// LayerNorm backward, dx part: with xhat = (x - mean) rstd and dnorm = dout * w,
// dx += rstd (dnorm - mean(dnorm) - xhat mean(dnorm xhat)). One work-group per row.
KERNEL_WG(WG, 1, 1)
void layernorm_backward_dx(GLOBAL float* dx, u64 dxOff,           // [N, C] accumulated
                           GLOBAL const float* dout, u64 doutOff, // [N, C]
                           GLOBAL const float* x, u64 xOff,       // [N, C]
                           GLOBAL const float* w, u64 wOff,       // [C]
                           GLOBAL const float* mean, u64 meanOff, // [N]
                           GLOBAL const float* rstd, u64 rstdOff, // [N]
                           int c)
{
    SHARED acc_t red[WG];
    const i64 row = GROUP_ID(0);
    const int lid = LOCAL_ID(0);
    x += xOff + row * c;
    dout += doutOff + row * c;
    dx += dxOff + row * c;
    w += wOff;
    const float m = mean[meanOff + row], rs = rstd[rstdOff + row];
    acc_t sDn = 0, sDnXh = 0;
    for (int j = lid; j < c; j += WG)
    {
        const float xh = (x[j] - m) * rs;
        const float dn = dout[j] * w[j];
        sDn += dn;
        sDnXh += dn * xh;
    }
    const float m1 = (float)(wg_sum(sDn, red) / c);
    const float m2 = (float)(wg_sum(sDnXh, red) / c);
    for (int j = lid; j < c; j += WG)
    {
        const float xh = (x[j] - m) * rs;
        const float dn = dout[j] * w[j];
        dx[j] = fma(rs, dn - m1 - xh * m2, dx[j]);
    }
}

// RMSNorm forward: rstd = 1/sqrt(mean(x^2) + eps), out = (x * rstd) * w. One work-group per row.
KERNEL_WG(WG, 1, 1)
void rmsnorm_forward(GLOBAL float* out, u64 outOff,   // [N, C]
                     GLOBAL float* rstd, u64 rstdOff, // [N]
                     GLOBAL const float* x, u64 xOff, // [N, C]
                     GLOBAL const float* w, u64 wOff, // [C]
                     int c, float eps)
{
    SHARED acc_t red[WG];
    const i64 row = GROUP_ID(0);
    const int lid = LOCAL_ID(0);
    x += xOff + row * c;
    out += outOff + row * c;
    w += wOff;
    acc_t q = 0;
    for (int j = lid; j < c; j += WG)
    {
        const acc_t v = x[j];
        q += v * v;
    }
    const acc_t meanSquare = wg_sum(q, red) / c;
    const float rs = (float)((acc_t)1 / sqrt(meanSquare + eps));
    if (lid == 0)
    {
        rstd[rstdOff + row] = rs;
    }
    for (int j = lid; j < c; j += WG)
    {
        out[j] = x[j] * rs * w[j];
    }
}

// RMSNorm backward, dx part: with xhat = x rstd and dnorm = dout * w,
// dx += rstd (dnorm - xhat mean(dnorm xhat)). One work-group per row.
KERNEL_WG(WG, 1, 1)
void rmsnorm_backward_dx(GLOBAL float* dx, u64 dxOff,           // [N, C] accumulated
                         GLOBAL const float* dout, u64 doutOff, // [N, C]
                         GLOBAL const float* x, u64 xOff,       // [N, C]
                         GLOBAL const float* w, u64 wOff,       // [C]
                         GLOBAL const float* rstd, u64 rstdOff, // [N]
                         int c)
{
    SHARED acc_t red[WG];
    const i64 row = GROUP_ID(0);
    const int lid = LOCAL_ID(0);
    x += xOff + row * c;
    dout += doutOff + row * c;
    dx += dxOff + row * c;
    w += wOff;
    const float rs = rstd[rstdOff + row];
    acc_t sDnXh = 0;
    for (int j = lid; j < c; j += WG)
    {
        sDnXh += dout[j] * w[j] * (x[j] * rs);
    }
    const float m2 = (float)(wg_sum(sDnXh, red) / c);
    for (int j = lid; j < c; j += WG)
    {
        const float xh = x[j] * rs;
        dx[j] = fma(rs, dout[j] * w[j] - xh * m2, dx[j]);
    }
}

// Per-chunk column sums for the weight (and bias) gradients; global (C, chunks).
// partial[q, j] = sum over rows r of chunk q of dout[r, j] * xhat[r, j] (xhat = (x - mean) rstd, or
// x rstd when isRms); with hasBias also partial[q, C + j] = sum dout[r, j]. Rows in order.
KERNEL void norm_weight_partials(GLOBAL float* partial,                 // [chunks, stride]
                                 GLOBAL const float* dout, u64 doutOff, // [N, C]
                                 GLOBAL const float* x, u64 xOff,       // [N, C]
                                 GLOBAL const float* mean, u64 meanOff, // [N] (LayerNorm)
                                 GLOBAL const float* rstd, u64 rstdOff, // [N]
                                 int isRms, int hasBias, int n, int c, int chunkRows, int stride)
{
    const int j = GLOBAL_ID(0), q = GLOBAL_ID(1);
    if (j >= c)
    {
        return;
    }
    dout += doutOff;
    x += xOff;
    mean += meanOff;
    rstd += rstdOff;
    const int r0 = q * chunkRows, r1 = min(n, r0 + chunkRows);
    float sw = 0.0f, sb = 0.0f;
    for (int r = r0; r < r1; r++)
    {
        const float g = dout[(i64)r * c + j];
        const float xv = x[(i64)r * c + j];
        const float xh = isRms ? xv * rstd[r] : (xv - mean[r]) * rstd[r];
        sw = fma(g, xh, sw);
        sb += g;
    }
    partial[(i64)q * stride + j] = sw;
    if (hasBias)
    {
        partial[(i64)q * stride + c + j] = sb;
    }
}

// Adds the chunks' partial sums in chunk order: first[j] += sum_q partial[q, j] for j < split, and
// second[j - split] += ... for the rest; global (stride).
KERNEL void norm_column_reduce(GLOBAL const float* partial,         // [chunks, stride]
                               GLOBAL float* first, u64 firstOff,   // [split]
                               GLOBAL float* second, u64 secondOff, // [stride - split]
                               int chunks, int stride, int split)
{
    const int j = GLOBAL_ID(0);
    if (j >= stride)
    {
        return;
    }
    float s = 0.0f;
    for (int q = 0; q < chunks; q++)
    {
        s += partial[(i64)q * stride + j];
    }
    if (j < split)
    {
        first[firstOff + j] += s;
    }
    else
    {
        second[secondOff + j - split] += s;
    }
}

// Optimizer.h: global gradient norm (sum of squares) and the AdamW update.
//
// SumOfSquares: x is cut into chunks of `chunk` elements (a function of n only); sumsq_partials
// reduces each chunk in one work-group (fixed tree order) into partial[q] (acc_t), and
// sumsq_finish adds the partials in one work-group and adds the total to result[0]. No atomics,
// so the result is reproducible.

// partial[q] = sum of x^2 over chunk q; one work-group (WG) per chunk.
KERNEL_WG(WG, 1, 1)
void sumsq_partials(GLOBAL acc_t* partial,           // [chunks]
                    GLOBAL const float* x, u64 xOff, // [n]
                    i64 n, i64 chunk)
{
    SHARED acc_t red[WG];
    const i64 q = GROUP_ID(0);
    x += xOff;
    const i64 start = q * chunk, end = min(n, start + chunk);
    acc_t s = 0;
    for (i64 i = start + LOCAL_ID(0); i < end; i += WG)
    {
        const acc_t v = x[i];
        s += v * v;
    }
    s = wg_sum(s, red);
    if (LOCAL_ID(0) == 0)
    {
        partial[q] = s;
    }
}

// result[0] += sum of partial[0, chunks); one work-group.
KERNEL_WG(WG, 1, 1)
void sumsq_finish(GLOBAL float* result, u64 rOff, // [1]
                  GLOBAL const acc_t* partial,    // [chunks]
                  int chunks)
{
    SHARED acc_t red[WG];
    acc_t s = 0;
    for (int i = LOCAL_ID(0); i < chunks; i += WG)
    {
        s += partial[i];
    }
    s = wg_sum(s, red);
    if (LOCAL_ID(0) == 0)
    {
        result[rOff] = (float)(result[rOff] + s);
    }
}

// AdamW in the order of torch.optim.AdamW: g = grad * clip; p *= 1 - lr wd;
// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p += (-lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps).
// clip = min(1, maxNorm / (sqrt(normSq[0]) + 1e-6)) when hasNorm and maxNorm > 0 (as
// torch.nn.utils.clip_grad_norm_), read on the device so no host round trip is needed. A
// non-finite normSq (when hasNorm) skips the update.
KERNEL void adamw(GLOBAL float* p, u64 pOff,            // [n] updated
                  GLOBAL const float* g, u64 gOff,      // [n]
                  GLOBAL float* m, u64 mOff,            // [n] updated
                  GLOBAL float* v, u64 vOff,            // [n] updated
                  GLOBAL const float* normSq, u64 nOff, // [1] when hasNorm
                  int hasNorm, float maxNorm, float decay, float beta1, float oneMinusBeta1,
                  float beta2, float oneMinusBeta2, float negStepSize, float bias2Sqrt, float eps, i64 n)
{
    // A NaN or Inf among the gradients makes the squared norm non-finite: the step is skipped, p, m
    // and v untouched (an exponent test on the bits, which no fast-math option can fold away).
    if (hasNorm && (AS_UINT(normSq[nOff]) & 0x7f800000u) == 0x7f800000u)
    {
        return;
    }
    float clip = 1.0f;
    if (hasNorm && maxNorm > 0.0f)
    {
        const acc_t norm = sqrt((acc_t)normSq[nOff]);
        clip = (float)min((acc_t)1, maxNorm / (norm + (acc_t)1e-6));
    }
    p += pOff;
    g += gOff;
    m += mOff;
    v += vOff;
    for (i64 i = GLOBAL_ID(0); i < n; i += GLOBAL_SIZE(0))
    {
        const float gi = g[i] * clip;
        const float mi = beta1 * m[i] + oneMinusBeta1 * gi;
        const float vi = beta2 * v[i] + oneMinusBeta2 * gi * gi;
        const float denom = sqrt(vi) / bias2Sqrt + eps;
        p[i] = p[i] * decay + negStepSize * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

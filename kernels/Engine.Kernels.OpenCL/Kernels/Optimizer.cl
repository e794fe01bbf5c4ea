// Optimizer.cl: global gradient norm (sum of squares) and the AdamW update.
//
// SumOfSquares: x is cut into chunks of `chunk` elements (a function of n only); sumsq_partials
// reduces each chunk in one work-group (fixed tree order) into partial[q] (acc_t), and
// sumsq_finish adds the partials in one work-group and adds the total to result[0]. No atomics,
// so the result is reproducible.

// partial[q] = sum of x^2 over chunk q; one work-group (WG) per chunk.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sumsq_partials(__global acc_t* partial,            // [chunks]
                    __global const float* x, ulong xOff, // [n]
                    long n, long chunk)
{
    __local acc_t red[WG];
    const long q = get_group_id(0);
    x += xOff;
    const long start = q * chunk, end = min(n, start + chunk);
    acc_t s = 0;
    for (long i = start + get_local_id(0); i < end; i += WG)
    {
        const acc_t v = x[i];
        s += v * v;
    }
    s = wg_sum(s, red);
    if (get_local_id(0) == 0)
    {
        partial[q] = s;
    }
}

// result[0] += sum of partial[0, chunks); one work-group.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sumsq_finish(__global float* result, ulong rOff,  // [1]
                  __global const acc_t* partial,       // [chunks]
                  int chunks)
{
    __local acc_t red[WG];
    acc_t s = 0;
    for (int i = get_local_id(0); i < chunks; i += WG)
    {
        s += partial[i];
    }
    s = wg_sum(s, red);
    if (get_local_id(0) == 0)
    {
        result[rOff] = (float)(result[rOff] + s);
    }
}

// AdamW in the order of torch.optim.AdamW: g = grad * clip; p *= 1 - lr wd;
// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p += (-lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps).
// clip = min(1, maxNorm / (sqrt(normSq[0]) + 1e-6)) when hasNorm and maxNorm > 0 (as
// torch.nn.utils.clip_grad_norm_), read on the device so no host round trip is needed.
__kernel void adamw(__global float* p, ulong pOff,             // [n] updated
                    __global const float* g, ulong gOff,       // [n]
                    __global float* m, ulong mOff,             // [n] updated
                    __global float* v, ulong vOff,             // [n] updated
                    __global const float* normSq, ulong nOff,  // [1] when hasNorm
                    int hasNorm, float maxNorm, float decay, float beta1, float oneMinusBeta1,
                    float beta2, float oneMinusBeta2, float negStepSize, float bias2Sqrt, float eps, long n)
{
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
    for (long i = get_global_id(0); i < n; i += get_global_size(0))
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

// CrossEntropy.h: the row pass of the LM head fused with log-softmax (TokenLogProb*).
//
// The host drives blocks of R consecutive rows (the [R, V] logits live in a scratch buffer the
// accelerator keeps):
//   logits [R, V]  = x[rows] W^T              (gemm, W is [V, C])
//   token_logprob_rows (this file), one work-group per block row: max, s = sum exp(z - max),
//     sed = sum exp(z - max)(z - max) in acc_t; logp = z_t - max - log s, H = log s - sed / s;
//     the backward overwrites the row with dz_j = dlogp (onehot_j - p_j) - dentropy p_j (log p_j + H)
//   dW [V, C]     += dlogits^T x[rows]        (gemm, beta = 1)
//   dx[rows] [R, C] = dlogits W                (gemm, beta = 0)
// A row whose target is negative gets logp = entropy = 0 and an all-zero gradient row (so its dx
// row is 0 and it adds nothing to dW). A target >= V (the CPU backend throws on the host) gives
// logp = NaN and a zero gradient row.

KERNEL_WG(WG, 1, 1)
void token_logprob_rows(GLOBAL float* logits,                    // [R, V] block logits; gradients on return when backward
                        GLOBAL const int* targets, u64 tOff,     // [N]
                        GLOBAL float* logp, u64 logpOff,         // [N] when hasLogp
                        GLOBAL float* entropy, u64 entOff,       // [N] when hasEntropy
                        GLOBAL const float* dlogp, u64 dlogpOff, // [N] when backward
                        GLOBAL const float* dent, u64 dentOff,   // [N] when hasDEntropy
                        int rowStart, int v, int hasLogp, int hasEntropy, int backward, int hasDEntropy)
{
    SHARED acc_t red[WG];
    SHARED float redf[WG];
    const int item = GROUP_ID(0);
    const int row = rowStart + item;
    const int lid = LOCAL_ID(0);
    GLOBAL float* z = logits + (i64)item * v;
    const int t = targets[tOff + row];
    // Skipped rows (negative or invalid target) run the same reductions on a safe index and are
    // masked at the end: no early return ahead of the barriers (PoCL mishandles those).
    const int skip = t < 0 || t >= v;
    const int tt = skip ? 0 : t;

    float mx = -INFINITY;
    for (int j = lid; j < v; j += WG)
    {
        const float zj = z[j];
        mx = (isnan(mx) || mx > zj) ? mx : zj;
    }
    mx = wg_max_n(mx, redf, WG);
    acc_t s = 0, sed = 0;
    for (int j = lid; j < v; j += WG)
    {
        const float d = z[j] - mx;
        const float e = exp(d);
        s += e;
        sed += (acc_t)e * d;
    }
    s = wg_sum(s, red);
    sed = wg_sum(sed, red);
    const acc_t logS = log(s);
    const acc_t ent = logS - sed / s;           // -sum p log p with log p = d - log s
    const acc_t lpt = (acc_t)z[tt] - mx - logS; // log p of the target
    if (lid == 0)
    {
        if (hasLogp)
        {
            logp[logpOff + row] = skip ? (t < 0 ? 0.0f : NAN) : (float)lpt;
        }
        if (hasEntropy)
        {
            entropy[entOff + row] = skip ? 0.0f : (float)ent;
        }
    }

    // Every work-item has read z[tt]; the row may now be overwritten.
    BARRIER_GLOBAL();
    const acc_t g = backward ? dlogp[dlogpOff + row] : 0;
    const acc_t h = hasDEntropy ? dent[dentOff + row] : 0;
    if (backward)
    {
        // dz_j = -p_j (g + h (log p_j + H)) + g [j = t] = -p_j (c0 + h d_j), c0 = g - h sed / s.
        const float invS = (float)(1 / s);
        const float c0 = (float)(g - h * sed / s);
        const float hf = (float)h;
        for (int j = lid; j < v; j += WG)
        {
            const float d = z[j] - mx;
            z[j] = skip ? 0.0f : -exp(d) * invS * fma(hf, d, c0);
        }
    }
    BARRIER_GLOBAL();
    if (backward && lid == 0 && !skip)
    {
        // The target entry in acc_t: g (1 - p_t) loses everything to cancellation in float when p_t -> 1.
        const acc_t pt = exp(lpt);
        z[t] = (float)(-g * expm1(lpt) - h * pt * (lpt + ent));
    }
}

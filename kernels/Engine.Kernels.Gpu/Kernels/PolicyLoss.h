// PolicyLoss.h: the RL loss terms, each forward and backward in one pass: the importance-weighted
// clipped surrogate, a KL term to a frozen policy (reference or teacher), the entropy bonus, and the
// per-token KL estimate. Formulas as the CPU backend's PolicyLossMath, in acc_t.
//
// policy_loss runs as one work-group: work-item l takes tokens l, l + WG, ... in order, writes
// their gradients and keeps its running sums; the sums are reduced in a fixed tree order and
// work-item 0 adds them to stats (kl_loss and entropy_bonus alike). Token counts per step are small (thousands), so one group is
// enough, and the statistics are reproducible.

#define KL_K1 0
#define KL_K2 1
#define KL_K3 2

// The KL estimate for d = clamp(logp_ref - logp, -20, 20) and its derivative with respect to logp.
FUNC acc_t kl_value(float logp, float logpRef, int estimator, acc_t* derivative)
{
    const acc_t raw = (acc_t)logpRef - logp;
    const acc_t d = clamp(raw, (acc_t)-20, (acc_t)20);
    const int clamped = raw != d;
    if (estimator == KL_K1)
    {
        *derivative = clamped ? 0 : 1;
        return -d;
    }
    if (estimator == KL_K2)
    {
        *derivative = clamped ? 0 : -d;
        return (acc_t)0.5 * d * d;
    }
    const acc_t e = exp(d);
    const acc_t k3 = e - d - 1;
    if (k3 > 10)
    {
        *derivative = 0;
        return 10;
    }
    *derivative = clamped ? 0 : 1 - e;
    return k3;
}

KERNEL_WG(WG, 1, 1)
void policy_loss(GLOBAL float* dlogp, u64 dlogpOff,       // [N] written
                 GLOBAL float* stats, u64 statsOff,       // [7] accumulated
                 GLOBAL const float* logp, u64 logpOff,   // [N]
                 GLOBAL const float* logpOld, u64 oldOff, // [N]
                 GLOBAL const float* adv, u64 advOff,     // [N]
                 GLOBAL const float* mask, u64 maskOff,   // [N]
                 GLOBAL const float* weights, u64 wOff,   // [N]
                 float epsLow, float epsHigh, float dualClip, int n)
{
    SHARED acc_t red[WG];
    acc_t sLoss = 0, sTokens = 0, sClipHigh = 0, sClipLow = 0, sRatio = 0, sApproxKl = 0, sDual = 0;
    for (int t = LOCAL_ID(0); t < n; t += WG)
    {
        const float lp = logp[logpOff + t], old = logpOld[oldOff + t];
        const acc_t logRatio = (acc_t)lp - old;
        const int ratioClamped = logRatio < -20 || logRatio > 20;
        const acc_t r = exp(clamp(logRatio, (acc_t)-20, (acc_t)20));
        const acc_t a = adv[advOff + t];
        const acc_t surr1 = -a * r;
        const acc_t rc = clamp(r, 1 - (acc_t)epsLow, 1 + (acc_t)epsHigh);
        const acc_t surr2 = -a * rc;
        const int clipHigh = a > 0 && r > 1 + (acc_t)epsHigh;
        const int clipLow = a < 0 && r < 1 - (acc_t)epsLow;
        acc_t loss = max(surr1, surr2);
        acc_t grad = (clipHigh || clipLow || ratioClamped) ? 0 : -a * r;
        int dual = 0;
        if (dualClip > 0 && a < 0 && -a * dualClip < loss)
        {
            loss = -a * dualClip;
            grad = 0;
            dual = 1;
        }

        const acc_t weight = weights[wOff + t], counted = mask[maskOff + t];
        dlogp[dlogpOff + t] = (float)(weight * grad);
        sLoss += weight * loss;
        sTokens += counted;
        sClipHigh += clipHigh ? counted : 0;
        sClipLow += clipLow ? counted : 0;
        sRatio += counted * r;
        sApproxKl += counted * ((acc_t)old - lp);
        sDual += dual ? counted : 0;
    }
    sLoss = wg_sum(sLoss, red);
    sTokens = wg_sum(sTokens, red);
    sClipHigh = wg_sum(sClipHigh, red);
    sClipLow = wg_sum(sClipLow, red);
    sRatio = wg_sum(sRatio, red);
    sApproxKl = wg_sum(sApproxKl, red);
    sDual = wg_sum(sDual, red);
    if (LOCAL_ID(0) == 0)
    {
        stats += statsOff;
        stats[0] = (float)(stats[0] + sLoss);
        stats[1] = (float)(stats[1] + sTokens);
        stats[2] = (float)(stats[2] + sClipHigh);
        stats[3] = (float)(stats[3] + sClipLow);
        stats[4] = (float)(stats[4] + sRatio);
        stats[5] = (float)(stats[5] + sApproxKl);
        stats[6] = (float)(stats[6] + sDual);
    }
}

// A KL term to a frozen policy (reference or teacher): dlogp += w coef dk/dlogp (an exact zero is not
// added, so a silent term leaves the other terms' bits alone), four statistics as policy_loss's.
KERNEL_WG(WG, 1, 1)
void kl_loss(GLOBAL float* dlogp, u64 dlogpOff,             // [N] accumulated
             GLOBAL float* stats, u64 statsOff,             // [4] accumulated
             GLOBAL const float* logp, u64 logpOff,         // [N]
             GLOBAL const float* target, u64 targetOff,     // [N]
             GLOBAL const float* mask, u64 maskOff,         // [N]
             GLOBAL const float* weights, u64 wOff,         // [N]
             float coef, int estimator, int n)
{
    SHARED acc_t red[WG];
    acc_t sLoss = 0, sEstimate = 0, sLogRatio = 0, sTokens = 0;
    for (int t = LOCAL_ID(0); t < n; t += WG)
    {
        const float lp = logp[logpOff + t], tg = target[targetOff + t];
        acc_t derivative;
        const acc_t value = kl_value(lp, tg, estimator, &derivative);
        const acc_t weight = weights[wOff + t], counted = mask[maskOff + t];
        const acc_t add = weight * coef * derivative;
        if (add != 0)
        {
            dlogp[dlogpOff + t] = (float)(dlogp[dlogpOff + t] + add);
        }
        sLoss += weight * coef * value;
        sEstimate += counted * value;
        sLogRatio += counted * clamp((acc_t)tg - lp, (acc_t)-20, (acc_t)20);
        sTokens += counted;
    }
    sLoss = wg_sum(sLoss, red);
    sEstimate = wg_sum(sEstimate, red);
    sLogRatio = wg_sum(sLogRatio, red);
    sTokens = wg_sum(sTokens, red);
    if (LOCAL_ID(0) == 0)
    {
        stats += statsOff;
        stats[0] = (float)(stats[0] + sLoss);
        stats[1] = (float)(stats[1] + sEstimate);
        stats[2] = (float)(stats[2] + sLogRatio);
        stats[3] = (float)(stats[3] + sTokens);
    }
}

// The entropy bonus: dentropy = -coef w (when hasDEntropy), two statistics.
KERNEL_WG(WG, 1, 1)
void entropy_bonus(GLOBAL float* dent, u64 dentOff,          // [N] written when hasDEntropy
                   GLOBAL float* stats, u64 statsOff,        // [2] accumulated
                   GLOBAL const float* entropy, u64 entOff,  // [N]
                   GLOBAL const float* mask, u64 maskOff,    // [N]
                   GLOBAL const float* weights, u64 wOff,    // [N]
                   int hasDEntropy, float coef, int n)
{
    SHARED acc_t red[WG];
    acc_t sLoss = 0, sEntropy = 0;
    for (int t = LOCAL_ID(0); t < n; t += WG)
    {
        const acc_t weight = weights[wOff + t], h = entropy[entOff + t];
        if (hasDEntropy)
        {
            dent[dentOff + t] = (float)(weight * -coef);
        }
        sLoss -= weight * coef * h;
        sEntropy += mask[maskOff + t] * h;
    }
    sLoss = wg_sum(sLoss, red);
    sEntropy = wg_sum(sEntropy, red);
    if (LOCAL_ID(0) == 0)
    {
        stats += statsOff;
        stats[0] = (float)(stats[0] + sLoss);
        stats[1] = (float)(stats[1] + sEntropy);
    }
}

// output[t] = k(logp_ref - logp) (the KL-in-reward variant).
KERNEL void kl_penalty(GLOBAL float* out, u64 outOff,           // [N]
                       GLOBAL const float* logp, u64 logpOff,   // [N]
                       GLOBAL const float* logpRef, u64 refOff, // [N]
                       int estimator, int n)
{
    const int t = GLOBAL_ID(0);
    if (t >= n)
    {
        return;
    }
    acc_t derivative;
    out[outOff + t] = (float)kl_value(logp[logpOff + t], logpRef[refOff + t], estimator, &derivative);
}

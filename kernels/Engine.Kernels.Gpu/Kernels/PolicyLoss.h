// PolicyLoss.h: the importance-weighted clipped policy loss (forward and backward in one pass)
// and the per-token KL estimate. Formulas as the CPU backend's PolicyLossMath, in acc_t.
//
// policy_loss runs as one work-group: work-item l takes tokens l, l + WG, ... in order, writes
// their gradients and keeps nine running sums; the sums are reduced in a fixed tree order and
// work-item 0 adds them to stats. Token counts per step are small (thousands), so one group is
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
                 GLOBAL float* dent, u64 dentOff,         // [N] written when hasDEntropy
                 GLOBAL float* stats, u64 statsOff,       // [9] accumulated
                 GLOBAL const float* logp, u64 logpOff,   // [N]
                 GLOBAL const float* logpOld, u64 oldOff, // [N]
                 GLOBAL const float* adv, u64 advOff,     // [N]
                 GLOBAL const float* mask, u64 maskOff,   // [N]
                 GLOBAL const float* weights, u64 wOff,   // [N]
                 GLOBAL const float* logpRef, u64 refOff, // [N] when hasRef
                 GLOBAL const float* entropy, u64 entOff, // [N] when hasEntropy
                 int hasDEntropy, int hasRef, int hasEntropy,
                 float epsLow, float epsHigh, float dualClip, float klCoef, int estimator, float entropyCoef, int n)
{
    SHARED acc_t red[WG];
    acc_t sLoss = 0, sTokens = 0, sClipHigh = 0, sClipLow = 0, sRatio = 0, sApproxKl = 0, sEntropy = 0, sRefKl = 0, sDual = 0;
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
        acc_t refKl = 0;
        if (hasRef)
        {
            acc_t derivative;
            refKl = kl_value(lp, logpRef[refOff + t], estimator, &derivative);
            if (klCoef != 0)
            {
                loss += klCoef * refKl;
                grad += klCoef * derivative;
            }
        }
        const float h = hasEntropy ? entropy[entOff + t] : 0.0f;
        loss -= (acc_t)entropyCoef * h;

        const acc_t weight = weights[wOff + t], counted = mask[maskOff + t];
        dlogp[dlogpOff + t] = (float)(weight * grad);
        if (hasDEntropy)
        {
            dent[dentOff + t] = (float)(weight * -entropyCoef);
        }
        sLoss += weight * loss;
        sTokens += counted;
        sClipHigh += clipHigh ? counted : 0;
        sClipLow += clipLow ? counted : 0;
        sRatio += counted * r;
        sApproxKl += counted * ((acc_t)old - lp);
        sEntropy += hasEntropy ? counted * h : 0;
        sRefKl += hasRef ? counted * refKl : 0;
        sDual += dual ? counted : 0;
    }
    sLoss = wg_sum(sLoss, red);
    sTokens = wg_sum(sTokens, red);
    sClipHigh = wg_sum(sClipHigh, red);
    sClipLow = wg_sum(sClipLow, red);
    sRatio = wg_sum(sRatio, red);
    sApproxKl = wg_sum(sApproxKl, red);
    sEntropy = wg_sum(sEntropy, red);
    sRefKl = wg_sum(sRefKl, red);
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
        stats[6] = (float)(stats[6] + sEntropy);
        stats[7] = (float)(stats[7] + sRefKl);
        stats[8] = (float)(stats[8] + sDual);
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

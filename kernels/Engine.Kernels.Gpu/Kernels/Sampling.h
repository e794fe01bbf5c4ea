// Sampling.h: token sampling (one work-group per row) and row gather.
//
// Per row, as the CPU backend's sampler:
//   policy   log softmax(z)[token] = z_token - max - log sum exp(z - max)
//   greedy   (t <= 0, or NaN) the first index of max z
//   else     top-k on z: keep z >= the k-th largest z (every tie at the k-th value stays), found by
//            bisection on the float order (each probe one counting pass over the row);
//            e_j = exp((z_j - max) / t) for kept tokens, 0 otherwise (in a scratch row);
//            top-p on e: keep e >= tau, the largest threshold whose kept mass reaches p of the total
//            (bisection on the float bits, each probe one summing pass);
//            inverse CDF in ascending token order: the first token whose running sum of e exceeds
//            u * sum e (sums in acc_t: per work-item chunk sums, then the chunk's entries one by
//            one), the last token of positive e if rounding leaves the target uncrossed;
//            sampleLogp = log e_token - log sum e.

// An unsigned key ordered as the floats (-0 taken as +0).
FUNC uint ordered_key(float x)
{
    const uint bits = AS_UINT(x == 0.0f ? 0.0f : x);
    return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
}

FUNC float from_ordered_key(uint key)
{
    return AS_FLOAT((key & 0x80000000u) != 0 ? key & 0x7FFFFFFFu : ~key);
}

KERNEL_WG(WG, 1, 1)
void sample_tokens(GLOBAL int* tokens, u64 tokOff,         // [S]
                   GLOBAL float* sampleLogp, u64 slpOff,   // [S]
                   GLOBAL float* policyLogp, u64 plpOff,   // [S]
                   GLOBAL const float* logits, u64 zOff,   // [S, V]
                   GLOBAL const float* uniforms, u64 uOff, // [S]
                   GLOBAL const float* temps, u64 tOff,    // [S]
                   GLOBAL const int* topKs, u64 kOff,      // [S]
                   GLOBAL const float* topPs, u64 pOff,    // [S]
                   GLOBAL float* scratch,                  // [S, V] e values
                   int v)
{
    SHARED acc_t red[WG];
    SHARED float redf[WG];
    SHARED int redi[WG];
    const int row = GROUP_ID(0);
    const int lid = LOCAL_ID(0);
    GLOBAL const float* z = logits + zOff + (i64)row * v;
    GLOBAL float* e = scratch + (i64)row * v;

    float mx = -INFINITY;
    for (int j = lid; j < v; j += WG)
    {
        const float zj = z[j];
        mx = (isnan(mx) || mx > zj) ? mx : zj;
    }
    mx = wg_max_n(mx, redf, WG);
    acc_t s = 0;
    for (int j = lid; j < v; j += WG)
    {
        s += exp(z[j] - mx);
    }
    const acc_t logS = log(wg_sum(s, red));

    const float t = temps[tOff + row];
    int token;
    float slp;
    if (!(t > 0.0f))
    {
        int first = v;
        for (int j = lid; j < v; j += WG)
        {
            if (z[j] == mx)
            {
                first = min(first, j);
            }
        }
        first = wg_min_int(first, redi);
        token = first == v ? 0 : first;
        slp = 0.0f;
    }
    else
    {
        // Top-k: the k-th largest logit is the largest key whose count of logits at or above it reaches k.
        const int k = topKs[kOff + row];
        float kth = -INFINITY;
        if (k > 0 && k < v)
        {
            uint lo = ordered_key(-INFINITY), hi = ordered_key(mx) + 1;
            while (hi - lo > 1)
            {
                const uint mid = lo + (hi - lo) / 2;
                const float th = from_ordered_key(mid);
                int count = 0;
                for (int j = lid; j < v; j += WG)
                {
                    count += z[j] >= th ? 1 : 0;
                }
                if (wg_sum_int(count, redi) >= k)
                {
                    lo = mid;
                }
                else
                {
                    hi = mid;
                }
            }
            kth = from_ordered_key(lo);
        }
        for (int j = lid; j < v; j += WG)
        {
            const float zj = z[j];
            e[j] = zj >= kth ? exp((zj - mx) / t) : 0.0f;
        }
        BARRIER_GLOBAL();

        // Top-p: tau = the largest threshold whose kept mass (sum of e >= tau) reaches p of the total.
        const float p = topPs[pOff + row];
        if (p < 1.0f)
        {
            acc_t mass = 0;
            for (int j = lid; j < v; j += WG)
            {
                mass += e[j];
            }
            const acc_t target = p * wg_sum(mass, red);
            uint lo = 0, hi = AS_UINT(1.0f) + 1;
            while (hi - lo > 1)
            {
                const uint mid = lo + (hi - lo) / 2;
                const float th = AS_FLOAT(mid);
                acc_t w = 0;
                for (int j = lid; j < v; j += WG)
                {
                    const float ej = e[j];
                    w += ej >= th ? ej : 0.0f;
                }
                if (wg_sum(w, red) >= target)
                {
                    lo = mid;
                }
                else
                {
                    hi = mid;
                }
            }
            const float tau = AS_FLOAT(lo);
            for (int j = lid; j < v; j += WG)
            {
                if (e[j] < tau)
                {
                    e[j] = 0.0f;
                }
            }
            BARRIER_GLOBAL();
        }

        // Inverse CDF: work-item l sums its contiguous chunk; work-item 0 walks the chunk sums in order.
        const int chunk = (v + WG - 1) / WG;
        const int c0 = min(v, lid * chunk), c1 = min(v, c0 + chunk);
        acc_t cs = 0;
        for (int j = c0; j < c1; j++)
        {
            cs += e[j];
        }
        red[lid] = cs;
        BARRIER();
        if (lid == 0)
        {
            acc_t total = 0;
            for (int c = 0; c < WG; c++)
            {
                total += red[c];
            }
            const acc_t goal = max(0.0f, uniforms[uOff + row]) * total;
            acc_t cumulative = 0;
            int pick = -1;
            for (int c = 0; c < WG && pick < 0; c++)
            {
                if (cumulative + red[c] > goal)
                {
                    acc_t run = cumulative;
                    int last = -1;
                    const int j0 = min(v, c * chunk), j1 = min(v, j0 + chunk);
                    for (int j = j0; j < j1; j++)
                    {
                        if (e[j] > 0.0f)
                        {
                            run += e[j];
                            last = j;
                            if (run > goal)
                            {
                                pick = j;
                                break;
                            }
                        }
                    }
                    if (pick < 0 && last >= 0)
                    {
                        pick = last;
                    }
                }
                cumulative += red[c];
            }
            if (pick < 0)
            {
                pick = 0;
                for (int j = v - 1; j > 0; j--)
                {
                    if (e[j] > 0.0f)
                    {
                        pick = j;
                        break;
                    }
                }
            }
            redi[0] = pick;
            redf[0] = (float)(log((acc_t)e[pick]) - log(total));
        }
        BARRIER();
        token = redi[0];
        slp = redf[0];
    }
    if (lid == 0)
    {
        tokens[tokOff + row] = token;
        sampleLogp[slpOff + row] = slp;
        policyLogp[plpOff + row] = (float)((acc_t)z[token] - mx - logS);
    }
}

// dst[i, :] = src[rows[i], :]; a row index outside src gives a NaN row. Global (width, N), rows looped.
KERNEL void gather_rows(GLOBAL float* dst, u64 dstOff,       // [N, W]
                        GLOBAL const float* src, u64 srcOff, // [*, W]
                        GLOBAL const int* rows, u64 rowsOff, // [N]
                        int n, int width, i64 srcRows)
{
    const int j = GLOBAL_ID(0);
    if (j >= width)
    {
        return;
    }
    for (int i = GLOBAL_ID(1); i < n; i += GLOBAL_SIZE(1))
    {
        const int r = rows[rowsOff + i];
        dst[dstOff + (i64)i * width + j] = (r >= 0 && r < srcRows) ? src[srcOff + (i64)r * width + j] : NAN;
    }
}

// BcLoss.h: the behaviour-cloning loss head (Accelerator.BehaviourCloningLoss), forward and backward in
// one pass: per row p = softmax(z), the loss against the one-hot action (MSE, MAE on p, or
// cross-entropy) and dL/dz. Formulas as the CPU backend's, softmax sums and the loss in acc_t.
//
// One work-group: work-item l takes rows l, l + WG, ... (a row's few actions in order), writes their
// gradient rows and keeps its running loss; the partial losses are reduced in a fixed tree order and
// work-item 0 writes the loss. Batches are a few hundred rows of a few actions, so one group is enough.
// An action outside [0, A) (the CPU backend throws on the host) gives a NaN loss and a zero gradient row.

#define BC_MSE 0
#define BC_MAE 1
#define BC_CE 2

KERNEL_WG(WG, 1, 1)
void bc_loss(GLOBAL float* dlogits, u64 dzOff,        // [N, A] written
             GLOBAL float* loss, u64 lossOff,         // [1] written
             GLOBAL const float* logits, u64 zOff,    // [N, A]
             GLOBAL const int* actions, u64 yOff,     // [N]
             int kind, int n, int a)
{
    SHARED acc_t red[WG];
    const acc_t rowScale = kind == BC_CE ? (acc_t)1 / n : (acc_t)1 / ((acc_t)n * a);
    acc_t total = 0;
    for (int i = LOCAL_ID(0); i < n; i += WG)
    {
        GLOBAL const float* z = logits + zOff + (i64)i * a;
        GLOBAL float* dz = dlogits + dzOff + (i64)i * a;
        const int y = actions[yOff + i];
        if (y < 0 || y >= a)
        {
            total += NAN;
            for (int j = 0; j < a; j++)
            {
                dz[j] = 0.0f;
            }
            continue;
        }

        acc_t mx = -INFINITY, s = 0;
        for (int j = 0; j < a; j++)
        {
            mx = max(mx, (acc_t)z[j]);
        }
        for (int j = 0; j < a; j++)
        {
            s += exp((acc_t)z[j] - mx);
        }
        if (kind == BC_CE)
        {
            total += -((acc_t)z[y] - mx - log(s));
            for (int j = 0; j < a; j++)
            {
                const acc_t pj = exp((acc_t)z[j] - mx) / s;
                dz[j] = (float)(rowScale * (pj - (j == y ? 1 : 0)));
            }
            continue;
        }

        // dL/dp, then through the softmax Jacobian: dz_j = p_j (dp_j - sum_k p_k dp_k). dp is recomputed
        // in the second pass rather than stored (a row may have thousands of actions).
        acc_t dot = 0;
        for (int j = 0; j < a; j++)
        {
            const acc_t pj = exp((acc_t)z[j] - mx) / s;
            const acc_t diff = pj - (j == y ? 1 : 0);
            total += kind == BC_MSE ? diff * diff : fabs(diff);
            const acc_t dpj = rowScale * (kind == BC_MSE ? 2 * diff : (acc_t)((diff > 0) - (diff < 0)));
            dot += pj * dpj;
        }
        for (int j = 0; j < a; j++)
        {
            const acc_t pj = exp((acc_t)z[j] - mx) / s;
            const acc_t diff = pj - (j == y ? 1 : 0);
            const acc_t dpj = rowScale * (kind == BC_MSE ? 2 * diff : (acc_t)((diff > 0) - (diff < 0)));
            dz[j] = (float)(pj * (dpj - dot));
        }
    }
    total = wg_sum(total, red);
    if (LOCAL_ID(0) == 0)
    {
        loss[lossOff] = (float)(total * rowScale);
    }
}

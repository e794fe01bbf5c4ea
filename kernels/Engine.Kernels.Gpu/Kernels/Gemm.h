// Gemm.h: general matrix product and the bias gradient. The backend-only kernels are in the
// backends' Gemm.cl (gemm_cpu, for CPU OpenCL devices) and Gemm.cu (gemm_tf32, tensor cores).
//
// C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C + bias[N], row-major and dense.
// op(A) is A stored [M,K], or A stored [K,M] when transA; op(B) is B stored [K,N], or [N,K] when
// transB. With beta = 0, C is never read (NaN in C is ignored).
//
// Tiling: a work-group of RTS x RTS work-items computes a GEMM_TS x GEMM_TS tile of C; each
// work-item holds a WPT x WPT block of accumulators (rows ty + i*RTS, columns tx + j*RTS, so
// neighbouring work-items touch neighbouring columns). The inner dimension advances GEMM_TK at
// a time: the work-group stages op(A)[tile rows, k-step] and op(B)[k-step, tile columns] in
// local memory (the transposes are absorbed by the loads, which follow the stored layout so
// consecutive work-items read consecutive addresses), then every work-item runs WPT x WPT FMAs
// per k. Edges are zero-padded in the loads and masked in the stores. Each C element is one FMA
// chain over k in ascending order.

#ifndef GEMM_TS
#define GEMM_TS 64
#endif
#ifndef GEMM_TK
#define GEMM_TK 16
#endif
#ifndef GEMM_WPT
#define GEMM_WPT 4
#endif
#define RTS (GEMM_TS / GEMM_WPT)
#define LOADS_A (GEMM_TS * GEMM_TK / (RTS * RTS))

// One element of an operand's staged tile, for gemm and gemm_tf32: element idx of a tile of
// tileRows rows of op(X) (op(A)'s rows, or op(B)'s columns) by tileK values of k, starting at
// (row0, k0). X is stored [rows, K] when kContiguous, else [K, rows]; consecutive idx follow the
// stored layout so consecutive work-items read consecutive addresses. Zero outside the matrix.
FUNC float gemm_tile_load(GLOBAL const float* X, int kContiguous, int idx, int tileRows, int tileK,
                          int row0, int k0, int rows, int K, int* r, int* kk)
{
    if (kContiguous)
    {
        *kk = idx % tileK;
        *r = idx / tileK;
    }
    else
    {
        *r = idx % tileRows;
        *kk = idx / tileRows;
    }
    const int gr = row0 + *r, gk = k0 + *kk;
    if (gr >= rows || gk >= K)
    {
        return 0.0f;
    }
    return kContiguous ? X[(i64)gr * K + gk] : X[(i64)gk * rows + gr];
}

KERNEL_WG(RTS, RTS, 1)
void gemm(GLOBAL float* C, u64 cOff,             // [M, N]
          GLOBAL const float* A, u64 aOff,       // [M, K] or [K, M] (transA)
          GLOBAL const float* B, u64 bOff,       // [K, N] or [N, K] (transB)
          GLOBAL const float* bias, u64 biasOff, // [N] when hasBias
          int hasBias, int M, int N, int K, int transA, int transB, float alpha, float beta)
{
    C += cOff;
    A += aOff;
    B += bOff;
    bias += biasOff;
    const int tx = LOCAL_ID(0);             // column lane
    const int ty = LOCAL_ID(1);             // row lane
    const int tid = ty * RTS + tx;
    const int row0 = GROUP_ID(1) * GEMM_TS;
    const int col0 = GROUP_ID(0) * GEMM_TS;

    SHARED float As[GEMM_TK][GEMM_TS + 1];     // As[kk][r] = op(A)[row0 + r, k0 + kk]
    SHARED float Bs[GEMM_TK][GEMM_TS + 1];     // Bs[kk][c] = op(B)[k0 + kk, col0 + c]

    float acc[GEMM_WPT][GEMM_WPT];
    for (int i = 0; i < GEMM_WPT; i++)
    {
        for (int j = 0; j < GEMM_WPT; j++)
        {
            acc[i][j] = 0.0f;
        }
    }

    for (int k0 = 0; k0 < K; k0 += GEMM_TK)
    {
        for (int l = 0; l < LOADS_A; l++)
        {
            int r, kk;
            const float v = gemm_tile_load(A, !transA, tid + l * RTS * RTS, GEMM_TS, GEMM_TK, row0, k0, M, K, &r, &kk);
            As[kk][r] = v;
        }
        for (int l = 0; l < LOADS_A; l++)
        {
            int c, kk;
            const float v = gemm_tile_load(B, transB, tid + l * RTS * RTS, GEMM_TS, GEMM_TK, col0, k0, N, K, &c, &kk);
            Bs[kk][c] = v;
        }
        BARRIER();

        for (int kk = 0; kk < GEMM_TK; kk++)
        {
            float a[GEMM_WPT], b[GEMM_WPT];
            for (int i = 0; i < GEMM_WPT; i++)
            {
                a[i] = As[kk][ty + i * RTS];
            }
            for (int j = 0; j < GEMM_WPT; j++)
            {
                b[j] = Bs[kk][tx + j * RTS];
            }
            for (int i = 0; i < GEMM_WPT; i++)
            {
                for (int j = 0; j < GEMM_WPT; j++)
                {
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
                }
            }
        }
        BARRIER();
    }

    for (int i = 0; i < GEMM_WPT; i++)
    {
        const int r = row0 + ty + i * RTS;
        if (r >= M)
        {
            continue;
        }
        for (int j = 0; j < GEMM_WPT; j++)
        {
            const int c = col0 + tx + j * RTS;
            if (c >= N)
            {
                continue;
            }
            GLOBAL float* out = C + (i64)r * N + c;
            float v = beta == 0.0f ? acc[i][j] * alpha : fma(acc[i][j], alpha, *out * beta);
            if (hasBias)
            {
                v += bias[c];
            }
            *out = v;
        }
    }
}

// db[cols] += sum over rows of dy[rows, cols]: one work-item per column, rows summed in order.
KERNEL void bias_backward(GLOBAL float* db, u64 dbOff,       // [cols]
                          GLOBAL const float* dy, u64 dyOff, // [rows, cols]
                          int rows, int cols)
{
    const int j = GLOBAL_ID(0);
    if (j >= cols)
    {
        return;
    }
    db += dbOff;
    dy += dyOff;
    float s = 0.0f;
    for (int i = 0; i < rows; i++)
    {
        s += dy[(i64)i * cols + j];
    }
    db[j] += s;
}

// Gemm.cu: the CUDA-only part of the Gemm family, compiled after the shared Gemm.h.
//
// gemm_tf32 (ENGINE_CUDA_PRECISION=tf32, sm_80 and later) is gemm's tiling on tensor cores:
// operands rounded to TF32 (10-bit mantissa), products accumulated in fp32 by
// mma.sync.m16n8k8 (inline PTX: no CUDA header is needed).

// ---- TF32 tensor cores ----
//
// A block of 4 warps (2 x 2) computes a 64 x 64 tile of C, each warp a 32 x 32 sub-tile as
// 2 x 4 mma.m16n8k8 tiles (32 fp32 accumulators per thread). The k loop stages 16 values of k
// per step in shared memory exactly as gemm does (transposes absorbed by the loads, zero-padded
// edges), rounding to TF32 on the way in (cvt.rna: round to nearest, ties away, as cuBLAS).
// Rows of the staged tiles are padded to 72 floats so a warp's fragment reads hit 32 banks.
// Fragment layouts of m16n8k8 .tf32 (PTX ISA), g = lane / 4, t = lane % 4:
//   A (16 x 8, row-major): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)
//   B (8 x 8, column):     b0 (k = t, n = g), b1 (k = t + 4, n = g)
//   C (16 x 8):            c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)

#define TF32_BM 64
#define TF32_BN 64
#define TF32_BK 16
#define TF32_THREADS 128
#define TF32_PAD 72

__device__ __forceinline__ unsigned to_tf32(float x)
{
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ void mma_tf32(float* c, const unsigned* a, const unsigned* b)
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

extern "C" __global__ __launch_bounds__(TF32_THREADS)
void gemm_tf32(float* C, u64 cOff,             // [M, N]
               const float* A, u64 aOff,       // [M, K] or [K, M] (transA)
               const float* B, u64 bOff,       // [K, N] or [N, K] (transB)
               const float* bias, u64 biasOff, // [N] when hasBias
               int hasBias, int M, int N, int K, int transA, int transB, float alpha, float beta)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    C += cOff;
    A += aOff;
    B += bOff;
    bias += biasOff;
    __shared__ unsigned As[TF32_BK][TF32_PAD];  // As[kk][r] = tf32(op(A)[row0 + r, k0 + kk])
    __shared__ unsigned Bs[TF32_BK][TF32_PAD];  // Bs[kk][c] = tf32(op(B)[k0 + kk, col0 + c])
    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;  // the warp's sub-tile in the block tile
    const int row0 = blockIdx.y * TF32_BM;
    const int col0 = blockIdx.x * TF32_BN;

    float acc[2][4][4];
    for (int mi = 0; mi < 2; mi++)
    {
        for (int ni = 0; ni < 4; ni++)
        {
            for (int e = 0; e < 4; e++)
            {
                acc[mi][ni][e] = 0.0f;
            }
        }
    }

    for (int k0 = 0; k0 < K; k0 += TF32_BK)
    {
        for (int l = 0; l < TF32_BM * TF32_BK / TF32_THREADS; l++)
        {
            int r, kk;
            const float v = gemm_tile_load(A, !transA, tid + l * TF32_THREADS, TF32_BM, TF32_BK, row0, k0, M, K, &r, &kk);
            As[kk][r] = to_tf32(v);
        }
        for (int l = 0; l < TF32_BN * TF32_BK / TF32_THREADS; l++)
        {
            int c, kk;
            const float v = gemm_tile_load(B, transB, tid + l * TF32_THREADS, TF32_BN, TF32_BK, col0, k0, N, K, &c, &kk);
            Bs[kk][c] = to_tf32(v);
        }
        __syncthreads();

        for (int ks = 0; ks < TF32_BK; ks += 8)
        {
            unsigned a[2][4], b[4][2];
            for (int mi = 0; mi < 2; mi++)
            {
                const int r = wm + mi * 16 + g;
                a[mi][0] = As[ks + t][r];
                a[mi][1] = As[ks + t][r + 8];
                a[mi][2] = As[ks + t + 4][r];
                a[mi][3] = As[ks + t + 4][r + 8];
            }
            for (int ni = 0; ni < 4; ni++)
            {
                const int c = wn + ni * 8 + g;
                b[ni][0] = Bs[ks + t][c];
                b[ni][1] = Bs[ks + t + 4][c];
            }
            for (int mi = 0; mi < 2; mi++)
            {
                for (int ni = 0; ni < 4; ni++)
                {
                    mma_tf32(acc[mi][ni], a[mi], b[ni]);
                }
            }
        }
        __syncthreads();
    }

    for (int mi = 0; mi < 2; mi++)
    {
        for (int ni = 0; ni < 4; ni++)
        {
            for (int e = 0; e < 4; e++)
            {
                const int r = row0 + wm + mi * 16 + g + (e >= 2 ? 8 : 0);
                const int c = col0 + wn + ni * 8 + 2 * t + (e & 1);
                if (r >= M || c >= N)
                {
                    continue;
                }
                float* out = C + (i64)r * N + c;
                float v = beta == 0.0f ? acc[mi][ni][e] * alpha : fma(acc[mi][ni][e], alpha, *out * beta);
                if (hasBias)
                {
                    v += bias[c];
                }
                *out = v;
            }
        }
    }
#else
    __trap();  // the host runs gemm_tf32 only on sm_80 and later
#endif
}

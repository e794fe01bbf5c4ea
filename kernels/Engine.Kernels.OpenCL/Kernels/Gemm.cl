// Gemm.cl: the OpenCL-only part of the Gemm family, compiled after the shared Gemm.h.
// float8 vectors and vload8/vstore8 are OpenCL C; CUDA devices use gemm (or gemm_tf32) instead.

// gemm_cpu: the same product for CPU OpenCL devices (PoCL), where local memory is ordinary memory
// and every barrier splits the kernel into separate loops over the work-items, so the tiled
// kernel gemm runs slowly. Here a work-item computes a CPU_RM x 8 block of C in float8
// registers (explicit SIMD) with no local memory and no barrier: per k it loads 8 values of a row
// of op(B) and broadcasts CPU_RM values of a column of op(A). Each C element is one FMA chain
// over k in ascending order, as in the tiled kernel.
#define CPU_RM 8
__kernel void gemm_cpu(__global float* C, ulong cOff,             // [M, N]
                       __global const float* A, ulong aOff,       // [M, K] or [K, M] (transA)
                       __global const float* B, ulong bOff,       // [K, N] or [N, K] (transB)
                       __global const float* bias, ulong biasOff, // [N] when hasBias
                       int hasBias, int M, int N, int K, int transA, int transB, float alpha, float beta)
{
    C += cOff;
    A += aOff;
    B += bOff;
    bias += biasOff;
    const int j0 = get_global_id(0) * 8;
    const int i0 = get_global_id(1) * CPU_RM;
    if (j0 >= N || i0 >= M)
    {
        return;
    }
    const int rows = min(CPU_RM, M - i0), cols = min(8, N - j0);
    float8 acc[CPU_RM];
    for (int r = 0; r < CPU_RM; r++)
    {
        acc[r] = (float8)(0.0f);
    }
    for (int k = 0; k < K; k++)
    {
        float8 b;
        if (!transB && cols == 8)
        {
            b = vload8(0, B + (long)k * N + j0);
        }
        else
        {
            float t[8];
            for (int c = 0; c < 8; c++)
            {
                t[c] = c < cols ? (transB ? B[(long)(j0 + c) * K + k] : B[(long)k * N + j0 + c]) : 0.0f;
            }
            b = vload8(0, t);
        }
        #pragma unroll
        for (int r = 0; r < CPU_RM; r++)
        {
            const int ir = min(i0 + r, M - 1);   // rows past M repeat the last row; never stored
            const float a = transA ? A[(long)k * M + ir] : A[(long)ir * K + k];
            acc[r] = fma((float8)(a), b, acc[r]);
        }
    }
    for (int r = 0; r < rows; r++)
    {
        float t[8];
        vstore8(acc[r], 0, t);
        for (int c = 0; c < cols; c++)
        {
            __global float* out = C + (long)(i0 + r) * N + j0 + c;
            float v = beta == 0.0f ? t[c] * alpha : fma(t[c], alpha, *out * beta);
            if (hasBias)
            {
                v += bias[j0 + c];
            }
            *out = v;
        }
    }
}

// gemm_cpu_nt: gemm_cpu's counterpart for op(A) = A [M, K] and op(B) = B^T, B stored [N, K] (the
// Linear forward and the LM head), where both operands are contiguous along k: a work-item
// computes a 4 x 4 block of C as dot products, 8 k at a time in float8 lanes, then adds the lanes
// and the k tail. CPU OpenCL devices only (no local memory, no barrier).
__kernel void gemm_cpu_nt(__global float* C, ulong cOff,             // [M, N]
                          __global const float* A, ulong aOff,       // [M, K]
                          __global const float* B, ulong bOff,       // [N, K]
                          __global const float* bias, ulong biasOff, // [N] when hasBias
                          int hasBias, int M, int N, int K, float alpha, float beta)
{
    C += cOff;
    A += aOff;
    B += bOff;
    bias += biasOff;
    const int j0 = get_global_id(0) * 4;
    const int i0 = get_global_id(1) * 4;
    if (j0 >= N || i0 >= M)
    {
        return;
    }
    __global const float* a[4];
    __global const float* b[4];
    for (int r = 0; r < 4; r++)
    {
        a[r] = A + (long)min(i0 + r, M - 1) * K;   // rows and columns past the edge repeat the last; never stored
        b[r] = B + (long)min(j0 + r, N - 1) * K;
    }
    float8 acc[4][4];
    for (int r = 0; r < 4; r++)
    {
        for (int c = 0; c < 4; c++)
        {
            acc[r][c] = (float8)(0.0f);
        }
    }
    const int k8 = K & ~7;
    for (int k = 0; k < k8; k += 8)
    {
        const float8 a0 = vload8(0, a[0] + k), a1 = vload8(0, a[1] + k), a2 = vload8(0, a[2] + k), a3 = vload8(0, a[3] + k);
        #pragma unroll
        for (int c = 0; c < 4; c++)
        {
            const float8 bc = vload8(0, b[c] + k);
            acc[0][c] = fma(a0, bc, acc[0][c]);
            acc[1][c] = fma(a1, bc, acc[1][c]);
            acc[2][c] = fma(a2, bc, acc[2][c]);
            acc[3][c] = fma(a3, bc, acc[3][c]);
        }
    }
    for (int r = 0; r < 4 && i0 + r < M; r++)
    {
        for (int c = 0; c < 4 && j0 + c < N; c++)
        {
            const float8 v8 = acc[r][c];
            float s = ((v8.s0 + v8.s1) + (v8.s2 + v8.s3)) + ((v8.s4 + v8.s5) + (v8.s6 + v8.s7));
            for (int k = k8; k < K; k++)
            {
                s = fma(a[r][k], b[c][k], s);
            }
            __global float* out = C + (long)(i0 + r) * N + j0 + c;
            float v = beta == 0.0f ? s * alpha : fma(s, alpha, *out * beta);
            if (hasBias)
            {
                v += bias[j0 + c];
            }
            *out = v;
        }
    }
}

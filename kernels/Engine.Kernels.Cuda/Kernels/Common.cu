// Common.cu: prepended to every op-family source before it is compiled (CUDA C++, NVRTC).
//
// A kernel-for-kernel port of the OpenCL backend's sources (kernels/Engine.Kernels.OpenCL/Kernels):
// same algorithms, same reduction orders, so both backends match the CPU backend the same way.
// No CUDA header is included (NVRTC ships without them): the few definitions needed are below.
//
// Conventions of every kernel:
// - Each tensor is passed as (pointer, u64 element offset): the kernel adds the offset itself,
//   as in the OpenCL port, so the host side passes every view the same way.
// - Optional operands come with an int flag (hasX); when absent the pointer is a dummy buffer.
// - Block sizes come from the host as macros (WG, ...); kernels that rely on one declare it with
//   __launch_bounds__ and the host launches exactly that many threads.
// - No float atomics: every output element is written by one thread, and every reduction runs
//   in a fixed order (tree reductions over a fixed block size, partials reduced in order), so
//   results are reproducible run to run.
// - Row statistics (norms, softmax sums, losses, sums of squares) accumulate in acc_t = double,
//   as the CPU backend does (every CUDA device has fp64).
// - Math functions are the C++ overloads (exp(float) is the float function, exp(double) the
//   double one), exactly as the OpenCL C built-ins the kernels were written against.

typedef long long i64;
typedef unsigned long long u64;
typedef double acc_t;

#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fc00000)

__device__ __forceinline__ bool is_nan(float x) { return x != x; }
// Clamps that let NaN through, as Math.Clamp on the CPU backend does.
__device__ __forceinline__ float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }
__device__ __forceinline__ double clampd(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }
__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ i64 lmin(i64 a, i64 b) { return a < b ? a : b; }

#ifndef WG
#define WG 256
#endif

// Sum over the block (1D, size WG, a power of two) of one value per thread, in a fixed
// tree order. Every thread gets the total. scratch: [WG] shared. Must be reached by every
// thread of the group.
__device__ __forceinline__ acc_t wg_sum(acc_t v, acc_t* scratch)
{
    const unsigned lid = threadIdx.x;
    scratch[lid] = v;
    __syncthreads();
    for (unsigned h = WG / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            scratch[lid] += scratch[lid + h];
        }
        __syncthreads();
    }
    acc_t total = scratch[0];
    __syncthreads();
    return total;
}

// Float sum over a block of n threads (n a power of two, 1D), fixed tree order.
__device__ __forceinline__ float wg_sum_n(float v, float* scratch, unsigned n)
{
    const unsigned lid = threadIdx.x;
    scratch[lid] = v;
    __syncthreads();
    for (unsigned h = n / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            scratch[lid] += scratch[lid + h];
        }
        __syncthreads();
    }
    float total = scratch[0];
    __syncthreads();
    return total;
}

// Max over a block of n threads (n a power of two, 1D). NaN propagates.
__device__ __forceinline__ float wg_max_n(float v, float* scratch, unsigned n)
{
    const unsigned lid = threadIdx.x;
    scratch[lid] = v;
    __syncthreads();
    for (unsigned h = n / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            float a = scratch[lid], b = scratch[lid + h];
            scratch[lid] = (is_nan(a) || a > b) ? a : b;
        }
        __syncthreads();
    }
    float total = scratch[0];
    __syncthreads();
    return total;
}

// Integer sum over the block (size WG).
__device__ __forceinline__ int wg_sum_int(int v, int* scratch)
{
    const unsigned lid = threadIdx.x;
    scratch[lid] = v;
    __syncthreads();
    for (unsigned h = WG / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            scratch[lid] += scratch[lid + h];
        }
        __syncthreads();
    }
    int total = scratch[0];
    __syncthreads();
    return total;
}

// Integer minimum over the block (size WG).
__device__ __forceinline__ int wg_min_int(int v, int* scratch)
{
    const unsigned lid = threadIdx.x;
    scratch[lid] = v;
    __syncthreads();
    for (unsigned h = WG / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            scratch[lid] = imin(scratch[lid], scratch[lid + h]);
        }
        __syncthreads();
    }
    int total = scratch[0];
    __syncthreads();
    return total;
}

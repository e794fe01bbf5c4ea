// Common.cl: prepended to every op-family source before it is compiled (OpenCL C 1.2).
//
// Conventions of every kernel:
// - Each tensor is passed as (__global pointer, ulong element offset): the kernel adds the offset
//   itself, so no sub-buffers (and none of their alignment rules) are needed.
// - Optional operands come with an int flag (hasX); when absent the pointer is a dummy buffer.
// - Work-group sizes come from the host as macros (WG, ...); kernels that rely on one declare it
//   with reqd_work_group_size.
// - No float atomics: every output element is written by one work-item, and every reduction runs
//   in a fixed order (tree reductions over a fixed work-group size, partials reduced in order),
//   so results are reproducible run to run.
// - Row statistics (norms, softmax sums, losses, sums of squares) accumulate in acc_t: double
//   where the device has cl_khr_fp64, as the CPU backend does, else float.

#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t;
#else
typedef float acc_t;
#endif

#ifndef WG
#define WG 256
#endif

// Sum over the work-group (1D, size WG, a power of two) of one value per work-item, in a fixed
// tree order. Every work-item gets the total. scratch: [WG] local. Must be reached by every
// work-item of the group.
inline acc_t wg_sum(acc_t v, __local acc_t* scratch)
{
    const uint lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = WG / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            scratch[lid] += scratch[lid + h];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    acc_t total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

// Float sum over a work-group of n work-items (n a power of two, 1D), fixed tree order.
inline float wg_sum_n(float v, __local float* scratch, uint n)
{
    const uint lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = n / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            scratch[lid] += scratch[lid + h];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

// Max over a work-group of n work-items (n a power of two, 1D). NaN propagates.
inline float wg_max_n(float v, __local float* scratch, uint n)
{
    const uint lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = n / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            float a = scratch[lid], b = scratch[lid + h];
            scratch[lid] = (isnan(a) || a > b) ? a : b;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

// Integer sum over the work-group (size WG).
inline int wg_sum_int(int v, __local int* scratch)
{
    const uint lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = WG / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            scratch[lid] += scratch[lid + h];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    int total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

// Integer minimum over the work-group (size WG).
inline int wg_min_int(int v, __local int* scratch)
{
    const uint lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = WG / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            scratch[lid] = min(scratch[lid], scratch[lid + h]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    int total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

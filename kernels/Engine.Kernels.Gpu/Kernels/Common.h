// Common.h: compiled ahead of every op family, after the backend's prelude (Prelude.cl or
// Prelude.cu, which spell the dialect's macros: KERNEL, GLOBAL, SHARED, LOCAL, GLOBAL_ID, BARRIER,
// ...). Kernels are written once, in OpenCL terms: a work-group is a CUDA block, a work-item a
// thread, local memory is shared memory.
//
// Conventions of every kernel:
// - Each tensor is passed as (GLOBAL pointer, u64 element offset): the kernel adds the offset
//   itself, so no sub-buffers (and none of their alignment rules) are needed.
// - Optional operands come with an int flag (hasX); when absent the pointer is a dummy buffer.
// - Work-group sizes come from the host as macros (WG, ...); kernels that rely on one declare it
//   with KERNEL_WG, and the host launches exactly that many work-items per group.
// - No float atomics: every output element is written by one work-item, and every reduction runs
//   in a fixed order (tree reductions over a fixed work-group size, partials reduced in order),
//   so results are reproducible run to run.
// - Row statistics (norms, softmax sums, losses, sums of squares) accumulate in acc_t: double
//   where the device has it (every CUDA device; OpenCL with cl_khr_fp64), as the CPU backend
//   does, else float.
// - "Rows looped": a kernel whose rows are the global range's y or z steps through them by
//   GLOBAL_SIZE. On OpenCL that is one step; CUDA caps the grid at 65535 blocks there.
// - No early return ahead of a barrier, even one the whole work-group takes (PoCL mishandles it).

#ifndef WG
#define WG 256
#endif

// Sum over the work-group (1D, size WG, a power of two) of one value per work-item, in a fixed
// tree order. Every work-item gets the total. scratch: [WG] local. Must be reached by every
// work-item of the group.
FUNC acc_t wg_sum(acc_t v, LOCAL acc_t* scratch)
{
    const uint lid = LOCAL_ID(0);
    scratch[lid] = v;
    BARRIER();
    for (uint h = WG / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            scratch[lid] += scratch[lid + h];
        }
        BARRIER();
    }
    acc_t total = scratch[0];
    BARRIER();
    return total;
}

// Float sum over a work-group of n work-items (n a power of two, 1D), fixed tree order.
FUNC float wg_sum_n(float v, LOCAL float* scratch, uint n)
{
    const uint lid = LOCAL_ID(0);
    scratch[lid] = v;
    BARRIER();
    for (uint h = n / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            scratch[lid] += scratch[lid + h];
        }
        BARRIER();
    }
    float total = scratch[0];
    BARRIER();
    return total;
}

// Max over a work-group of n work-items (n a power of two, 1D). NaN propagates.
FUNC float wg_max_n(float v, LOCAL float* scratch, uint n)
{
    const uint lid = LOCAL_ID(0);
    scratch[lid] = v;
    BARRIER();
    for (uint h = n / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            float a = scratch[lid], b = scratch[lid + h];
            scratch[lid] = (isnan(a) || a > b) ? a : b;
        }
        BARRIER();
    }
    float total = scratch[0];
    BARRIER();
    return total;
}

// Integer sum over the work-group (size WG).
FUNC int wg_sum_int(int v, LOCAL int* scratch)
{
    const uint lid = LOCAL_ID(0);
    scratch[lid] = v;
    BARRIER();
    for (uint h = WG / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            scratch[lid] += scratch[lid + h];
        }
        BARRIER();
    }
    int total = scratch[0];
    BARRIER();
    return total;
}

// Integer minimum over the work-group (size WG).
FUNC int wg_min_int(int v, LOCAL int* scratch)
{
    const uint lid = LOCAL_ID(0);
    scratch[lid] = v;
    BARRIER();
    for (uint h = WG / 2; h > 0; h >>= 1)
    {
        if (lid < h)
        {
            scratch[lid] = min(scratch[lid], scratch[lid + h]);
        }
        BARRIER();
    }
    int total = scratch[0];
    BARRIER();
    return total;
}

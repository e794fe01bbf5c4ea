// Prelude.cl: the OpenCL C 1.2 spelling of the portable dialect the shared kernels
// (Engine.Kernels.Gpu/Kernels/*.h) are written in; Prelude.cu is the CUDA one. Each source is
// compiled as this prelude, then Common.h, then the op family's .h, then its OpenCL-only part
// (Gemm.cl), if any.
//
// The shared kernels are written against OpenCL C's built-ins (min, max, clamp, isnan, exp, ...),
// so here they are the built-ins themselves and the OpenCL results are exactly those of the
// kernels as first written.

#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t;
#else
typedef float acc_t;
#endif

typedef long i64;
typedef ulong u64;

#define KERNEL __kernel
#define KERNEL_WG(x, y, z) __kernel __attribute__((reqd_work_group_size(x, y, z)))
#define FUNC inline
#define GLOBAL __global
// SHARED declares a work-group array in a kernel; LOCAL qualifies a pointer to one.
#define SHARED __local
#define LOCAL __local

#define GLOBAL_ID(d) get_global_id(d)
#define GLOBAL_SIZE(d) get_global_size(d)
#define LOCAL_ID(d) get_local_id(d)
#define LOCAL_SIZE(d) get_local_size(d)
#define GROUP_ID(d) get_group_id(d)
#define NUM_GROUPS(d) get_num_groups(d)

#define BARRIER() barrier(CLK_LOCAL_MEM_FENCE)
#define BARRIER_GLOBAL() barrier(CLK_GLOBAL_MEM_FENCE)

#define AS_UINT(x) as_uint(x)
#define AS_FLOAT(x) as_float(x)

// Local memory sized at launch: an argument of its own (the host passes its size and no data).
#define DYNAMIC_LOCAL_ARG(type, name) __local type* name,
#define DYNAMIC_LOCAL(type, name, at)

// Prelude.cu: the CUDA C++ (NVRTC) spelling of the portable dialect the shared kernels
// (Engine.Kernels.Gpu/Kernels/*.h) are written in; Prelude.cl is the OpenCL one. Each source is
// compiled as this prelude, then Common.h, then the op family's .h, then its CUDA-only part
// (Gemm.cu), if any. No CUDA header is included (NVRTC ships without them): the few definitions
// needed are below.
//
// The shared kernels are written against OpenCL C's built-ins. Their CUDA counterparts: the math
// functions are the C++ overloads (exp(float) is the float function, exp(double) the double one);
// min and max of floating values are fmin and fmax; clamp lets NaN through, as Math.Clamp on the
// CPU backend does.
//
// Launches: the host passes a range of threads per dimension and launches the grid that covers
// it, so GLOBAL_ID(d) = block index * block size + thread index and GLOBAL_SIZE(d) = the grid's
// threads in that dimension. The host caps the grid at 65535 blocks in y and z, so kernels loop
// over their rows in steps of GLOBAL_SIZE (a loop that runs once on OpenCL).

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int uint;
// Every CUDA device has fp64: row statistics accumulate in double, as the CPU backend does.
typedef double acc_t;

#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fc00000)

#define KERNEL extern "C" __global__
#define KERNEL_WG(x, y, z) extern "C" __global__ __launch_bounds__((x) * (y) * (z))
#define FUNC __device__ __forceinline__
#define GLOBAL
// SHARED declares a block array in a kernel; LOCAL qualifies a pointer to one (generic in CUDA).
#define SHARED __shared__
#define LOCAL

#define CUDA_DIM_0 x
#define CUDA_DIM_1 y
#define CUDA_DIM_2 z
#define GLOBAL_ID(d) (blockIdx.CUDA_DIM_##d * blockDim.CUDA_DIM_##d + threadIdx.CUDA_DIM_##d)
#define GLOBAL_SIZE(d) (gridDim.CUDA_DIM_##d * blockDim.CUDA_DIM_##d)
#define LOCAL_ID(d) (threadIdx.CUDA_DIM_##d)
#define LOCAL_SIZE(d) (blockDim.CUDA_DIM_##d)
#define GROUP_ID(d) (blockIdx.CUDA_DIM_##d)
#define NUM_GROUPS(d) (gridDim.CUDA_DIM_##d)

// __syncthreads also orders the block's global memory accesses.
#define BARRIER() __syncthreads()
#define BARRIER_GLOBAL() __syncthreads()

#define AS_UINT(x) __float_as_uint(x)
#define AS_FLOAT(x) __uint_as_float(x)

#define isnan(x) ((x) != (x))
FUNC float clamp(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }
FUNC double clamp(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }

// Shared memory sized at launch: one dynamic block, which the host sizes as the sum of the
// kernel's pieces; each piece starts `at` elements in (all pieces are floats).
extern __shared__ float dynamicShared[];
#define DYNAMIC_LOCAL_ARG(type, name)
#define DYNAMIC_LOCAL(type, name, at) type* name = dynamicShared + (at)

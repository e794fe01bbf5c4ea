using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Engine.Core;
using Engine.Kernels.Gpu;
using Engine.Kernels.Cuda.Interop;

namespace Engine.Kernels.Cuda;

/// <summary>
/// The CUDA backend: one device, one stream. Ops launch kernels on the stream and return;
/// <see cref="Synchronize"/> and downloads wait. Kernels are the sources shared with the OpenCL
/// backend, one per op family (Gemm.cu, Norm.cu, Attention.cu ... behind Prelude.cu, see
/// <see cref="CudaSources"/>), compiled by NVRTC once per device and process
/// (see <see cref="CudaDeviceContext"/>). The op wrappers are the shared
/// <see cref="GpuAccelerator"/>'s; a launch writes its arguments into a parameter block allocated
/// once per accelerator, so nothing is allocated on the host per launch.
/// </summary>
/// <remarks>
/// Not thread-safe, like every accelerator (one thread drives it). Works in the device's primary
/// context, made current around each driver call and restored afterwards, so a host application's
/// own CUDA state is left alone; the stream does not synchronise with the legacy default stream.
/// Indices that the CPU backend validates on the host (token ids, positions, slots, block ids, row
/// indices, targets) live on the device here; kernels never access memory outside a table for a
/// bad index but mark the affected output with NaN instead of throwing (as the OpenCL backend).
/// GEMM precision: exact fp32 by default; <c>ENGINE_CUDA_PRECISION=tf32</c> runs every GEMM on
/// TF32 tensor cores (sm_80 and later; ignored on older devices), see <see cref="PrecisionVariable"/>.
/// </remarks>
internal sealed unsafe partial class CudaAccelerator : GpuAccelerator
{
    /// <summary>The environment variable selecting the GEMM precision: <c>fp32</c> (default) or <c>tf32</c>.</summary>
    public const string PrecisionVariable = "ENGINE_CUDA_PRECISION";

    /// <summary>The compiler options every module is built with besides the architecture (the block shapes the kernels assume).</summary>
    public const string BaseOptions = "-DWG=256 -DGEMM_TS=64 -DGEMM_TK=16 -DGEMM_WPT=4";

    /// <summary>Most kernel parameters of any launch (policy_loss has 31).</summary>
    private const int MaxParams = 48;

    /// <summary>Grid y and z limit of every CUDA device.</summary>
    private const long MaxGridYZ = 65535;

    private readonly CudaDeviceHandle device;
    private readonly nint stream;
    private readonly ulong dummy;

    // One block of native memory: MaxParams 8-byte value slots, then MaxParams pointers to them
    // (the void** cuLaunchKernel reads). The driver copies the values at launch, so the block is
    // reused by every launch.
    private readonly ulong* paramValues;
    private readonly void** paramPointers;

    public CudaAccelerator(CudaDeviceHandle device)
    {
        this.device = device;
        Context = device.Context;
        Tf32Gemm = ReadPrecision() && device.Major >= 8;
        GridSliceLimit = MaxGridYZ;
        paramValues = (ulong*)NativeMemory.AllocZeroed((nuint)MaxParams, (nuint)(sizeof(ulong) + sizeof(void*)));
        paramPointers = (void**)(paramValues + MaxParams);
        for (int i = 0; i < MaxParams; i++)
        {
            paramPointers[i] = paramValues + i;
        }

        nint created = 0;
        ulong placeholder = 0;
        using (Context.Enter())
        {
            CuNative.Check(CuNative.StreamCreate(&created, CuNative.StreamNonBlocking), "cuStreamCreate", device.Name);
            CuNative.Check(CuNative.MemAlloc(&placeholder, 256), "cuMemAlloc_v2", "placeholder for absent operands");
        }

        stream = created;
        dummy = placeholder;
        Wg = 256;
        GemmTile = 64;
    }

    public override DeviceInfo Info => device.Info;

    /// <summary>The device's shared context (modules, primary context).</summary>
    internal CudaDeviceContext Context { get; }

    protected override string SourceExtension => ".cu";

    protected override string BuildOptions => BaseOptions;

    protected override long LocalMemoryBytes => device.SharedMemoryBytes;

    protected override long MaxWorkGroupSize => device.MaxThreadsPerBlock;

    protected override string AttentionBuildOptions(int d, int tile) => AttentionOptions(d, tile);

    /// <summary>The compiler options of the attention module for head size <paramref name="d"/> and a tile.</summary>
    internal static string AttentionOptions(int d, int tile) =>
        string.Create(CultureInfo.InvariantCulture, $"{BaseOptions} -DHEAD_DIM={d} -DATT_TILE={tile}");

    /// <summary>
    /// True to run GEMMs on TF32 tensor cores (gemm_tf32), false for exact fp32 (gemm). Set from
    /// <see cref="PrecisionVariable"/> at creation (never on devices before sm_80); tests set it.
    /// </summary>
    internal bool Tf32Gemm { get; set; }

    /// <summary>True when <see cref="PrecisionVariable"/> asks for TF32; throws on a value other than fp32 or tf32.</summary>
    internal static bool ReadPrecision() => ParsePrecision(Environment.GetEnvironmentVariable(PrecisionVariable));

    /// <summary>True for "tf32", false for "fp32" or nothing (case-insensitive); throws naming the variable otherwise.</summary>
    internal static bool ParsePrecision(string? value)
    {
        value = value?.Trim();
        if (string.IsNullOrEmpty(value) || value.Equals("fp32", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        return value.Equals("tf32", StringComparison.OrdinalIgnoreCase)
            ? true
            : throw new EngineException($"{PrecisionVariable}={value} is not a precision: expected fp32 (the default) or tf32");
    }

    public override void Synchronize()
    {
        using (Context.Enter())
        {
            CuNative.Check(CuNative.StreamSynchronize(stream), "cuStreamSynchronize", device.Name);
        }
    }

    protected override DeviceBuffer AllocateCore(long length, DType type) => new CudaBuffer(this, length, type);

    // Copies go through the stream (async copy, then a stream sync) rather than the synchronous
    // cuMemcpyHtoD/DtoH, which run on the legacy default stream and would also wait for a host
    // application's work on it. The wait keeps the blocking semantics of Upload and Download.
    protected override void UploadCore(Tensor dst, ReadOnlySpan<byte> src)
    {
        using (Context.Enter())
        {
            fixed (byte* p = src)
            {
                CuNative.Check(CuNative.MemcpyHtoDAsync(Ptr(dst) + (ulong)(dst.Offset * 4), p, (nuint)src.Length, stream), "cuMemcpyHtoDAsync_v2");
            }

            CuNative.Check(CuNative.StreamSynchronize(stream), "cuStreamSynchronize", device.Name);
        }
    }

    protected override void DownloadCore(Tensor src, Span<byte> dst)
    {
        using (Context.Enter())
        {
            fixed (byte* p = dst)
            {
                CuNative.Check(CuNative.MemcpyDtoHAsync(p, Ptr(src) + (ulong)(src.Offset * 4), (nuint)dst.Length, stream), "cuMemcpyDtoHAsync_v2");
            }

            CuNative.Check(CuNative.StreamSynchronize(stream), "cuStreamSynchronize", device.Name);
        }
    }

    protected override void CopyCore(Tensor dst, Tensor src)
    {
        if (dst.Length == 0)
        {
            return;
        }

        ulong from = Ptr(src) + (ulong)(src.Offset * 4), to = Ptr(dst) + (ulong)(dst.Offset * 4);
        long bytes = dst.Length * 4;
        if (from == to)
        {
            return;
        }

        if (from < to + (ulong)bytes && to < from + (ulong)bytes)
        {
            // cuMemcpy leaves overlapping copies undefined; go through scratch (memmove semantics, as the CPU).
            ulong staging = CopyStaging.Ensure(bytes);
            CopyBytes(from, staging, bytes);
            from = staging;
        }

        CopyBytes(from, to, bytes);
    }

    private void CopyBytes(ulong from, ulong to, long bytes)
    {
        using (Context.Enter())
        {
            CuNative.Check(CuNative.MemcpyDtoDAsync(to, from, (nuint)bytes, stream), "cuMemcpyDtoDAsync_v2");
        }
    }

    protected override void FillCore(Tensor dst, float value)
    {
        if (dst.Length == 0)
        {
            return;
        }

        using (Context.Enter())
        {
            CuNative.Check(CuNative.MemsetD32Async(Ptr(dst) + (ulong)(dst.Offset * 4), BitConverter.SingleToUInt32Bits(value), (nuint)dst.Length, stream),
                "cuMemsetD32Async");
        }
    }

    protected override void ZeroCore(Tensor dst)
    {
        if (dst.Length > 0)
        {
            ZeroBytes(Ptr(dst) + (ulong)(dst.Offset * 4), dst.Length * 4);
        }
    }

    /// <summary>Queues a zero fill of <paramref name="bytes"/> bytes at <paramref name="ptr"/>.</summary>
    internal void ZeroBytes(ulong ptr, long bytes)
    {
        using (Context.Enter())
        {
            CuNative.Check(CuNative.MemsetD8Async(ptr, 0, (nuint)bytes, stream), "cuMemsetD8Async");
        }
    }

    protected override void DisposeCore()
    {
        using (Context.Enter())
        {
            CuNative.StreamSynchronize(stream);
            ReleaseKernelsAndScratch();
            CuNative.MemFree(dummy);
            CuNative.StreamDestroy(stream);
        }

        NativeMemory.Free(paramValues);
    }

    // ---- kernels and launches ----

    /// <summary>The device address of a view's buffer (the placeholder for the empty tensor); kernels add the offset.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ulong Ptr(Tensor t) => t.Buffer is CudaBuffer b ? b.Ptr : dummy;

    protected override ulong Address(Tensor t) => Ptr(t);

    /// <summary>A function from the module of <paramref name="file"/> compiled with <paramref name="options"/>.</summary>
    protected override nint LoadKernel(string file, string options, string name)
    {
        nint module = Context.Module(file, CudaSources.For(file), options);
        return Context.Function(module, name, file);
    }

    // Every parameter slot is 8 bytes; a 4-byte argument occupies the slot's first 4 bytes, which
    // is where the driver reads it (little-endian).
    protected override void SetArgument(nint kernel, string name, int index, ulong bits, int size)
    {
        if (index >= MaxParams)
        {
            throw new InvalidOperationException($"{name} has more than {MaxParams} parameters");
        }

        paramValues[index] = bits;
    }

    /// <summary>Local memory is the launch's dynamic shared memory (see <see cref="KernelArgs.LocalBytes"/>), not a parameter.</summary>
    protected override bool SetLocalArgument(nint kernel, string name, int index, long bytes) => false;

    /// <summary>
    /// Launches over a range of threads (as the OpenCL backend's NDRange): the grid is the range
    /// divided by the block, rounded up; the arguments' local memory is the dynamic shared memory.
    /// </summary>
    protected override void Launch(in KernelArgs args, int dims, long g0, long g1, long g2, int l0, int l1, int l2)
    {
        long b0 = (g0 + l0 - 1) / l0, b1 = (g1 + l1 - 1) / l1, b2 = (g2 + l2 - 1) / l2;
        if (b0 == 0 || b1 == 0 || b2 == 0)
        {
            return;
        }

        if (b0 > int.MaxValue || b1 > MaxGridYZ || b2 > MaxGridYZ)
        {
            throw new EngineException(string.Create(CultureInfo.InvariantCulture,
                $"{args.Name}: a grid of ({b0}, {b1}, {b2}) blocks exceeds CUDA's limits (2^31 - 1, 65535, 65535); split the batch"));
        }

        using (Context.Enter())
        {
            CuNative.Check(CuNative.LaunchKernel(args.Kernel, (uint)b0, (uint)b1, (uint)b2, (uint)l0, (uint)l1, (uint)l2,
                (uint)args.LocalBytes, stream, paramPointers, null), "cuLaunchKernel", args.Name);
        }
    }

    /// <summary>Caps a y or z dimension of rows at the grid limit; the kernels loop over the rows beyond it.</summary>
    protected override long GridRows(long rows) => Math.Min(rows, MaxGridYZ);

    protected override ulong AllocateScratch(long bytes, string what)
    {
        ulong ptr = 0;
        using (Context.Enter())
        {
            CuNative.Check(CuNative.MemAlloc(&ptr, (nuint)bytes), "cuMemAlloc_v2", what);
        }

        return ptr;
    }

    protected override void FreeScratch(ulong address, bool inUse)
    {
        // cuMemFree does not wait for queued kernels that may still use a buffer being replaced.
        if (inUse)
        {
            Synchronize();
        }

        using (Context.Enter())
        {
            CuNative.MemFree(address);
        }
    }
}

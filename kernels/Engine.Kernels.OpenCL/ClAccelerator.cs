using System.Globalization;
using System.Runtime.CompilerServices;
using Engine.Core;
using Engine.Kernels.Gpu;
using Engine.Kernels.OpenCL.Interop;

namespace Engine.Kernels.OpenCL;

/// <summary>
/// The OpenCL backend: one device, one in-order command queue. Ops enqueue kernels and return;
/// <see cref="Synchronize"/> and downloads wait. Kernels are the sources shared with the CUDA
/// backend, one per op family (Gemm.cl, Norm.cl, Attention.cl ... behind Prelude.cl, see
/// <see cref="ClSources"/>), built as OpenCL C 1.2 once per device and process (see <see cref="ClDeviceContext"/>). The op wrappers are the
/// shared <see cref="GpuAccelerator"/>'s; this class sets arguments with clSetKernelArg and
/// enqueues NDRanges.
/// </summary>
/// <remarks>
/// Not thread-safe, like every accelerator (one thread drives it). Indices that the CPU backend
/// validates on the host (token ids, positions, slots, block ids, row indices, targets) live on
/// the device here; kernels never access memory outside a table for a bad index but mark the
/// affected output with NaN instead of throwing (see each family's notes).
/// </remarks>
internal sealed unsafe partial class ClAccelerator : GpuAccelerator
{
    private readonly ClDeviceHandle device;
    private readonly nint queue;
    private readonly nint dummy;

    public ClAccelerator(ClDeviceHandle device)
    {
        this.device = device;
        Context = device.Context;
        int code;
        queue = ClNative.CreateCommandQueue(Context.Handle, device.Device, 0, &code);
        ClNative.Check(code, "clCreateCommandQueue", device.Name);

        // Work-group size of the row and reduction kernels: a power of two the device allows, at most 256.
        int wg = 256;
        while (wg > 64 && wg > Context.MaxWorkGroupSize)
        {
            wg /= 2;
        }

        Wg = wg;
        GemmTile = wg >= 256 ? 64 : 32;
        TiledGemm = !device.IsCpu;
        BuildOptions = string.Create(CultureInfo.InvariantCulture,
            $"-cl-std=CL1.2 -D WG={Wg} -D GEMM_TS={GemmTile} -D GEMM_TK=16 -D GEMM_WPT=4");

        int dummyCode;
        dummy = ClNative.CreateBuffer(Context.Handle, ClNative.MemReadWrite, 64, null, &dummyCode);
        ClNative.Check(dummyCode, "clCreateBuffer", "placeholder for absent operands");
    }

    public override DeviceInfo Info => device.Info;

    /// <summary>The device's shared context (programs, limits).</summary>
    internal ClDeviceContext Context { get; }

    protected override string SourceExtension => ".cl";

    protected override string BuildOptions { get; }

    protected override long LocalMemoryBytes => Context.LocalMemoryBytes;

    protected override long MaxWorkGroupSize => Context.MaxWorkGroupSize;

    protected override string AttentionBuildOptions(int d, int tile) =>
        string.Create(CultureInfo.InvariantCulture, $"{BuildOptions} -D HEAD_DIM={d} -D ATT_TILE={tile}");

    public override void Synchronize() => ClNative.Check(ClNative.Finish(queue), "clFinish", device.Name);

    protected override DeviceBuffer AllocateCore(long length, DType type) => new ClBuffer(this, length, type);

    protected override void UploadCore(Tensor dst, ReadOnlySpan<byte> src)
    {
        fixed (byte* p = src)
        {
            ClNative.Check(ClNative.EnqueueWriteBuffer(queue, Mem(dst), 1, (nuint)(dst.Offset * 4), (nuint)src.Length, p, 0, null, null),
                "clEnqueueWriteBuffer");
        }
    }

    protected override void DownloadCore(Tensor src, Span<byte> dst)
    {
        fixed (byte* p = dst)
        {
            ClNative.Check(ClNative.EnqueueReadBuffer(queue, Mem(src), 1, (nuint)(src.Offset * 4), (nuint)dst.Length, p, 0, null, null),
                "clEnqueueReadBuffer");
        }
    }

    protected override void CopyCore(Tensor dst, Tensor src)
    {
        if (dst.Length == 0)
        {
            return;
        }

        nint from = Mem(src), to = Mem(dst);
        long bytes = dst.Length * 4, srcAt = src.Offset * 4, dstAt = dst.Offset * 4;
        if (from == to && srcAt < dstAt + bytes && dstAt < srcAt + bytes)
        {
            // OpenCL refuses overlapping copies (CL_MEM_COPY_OVERLAP); go through scratch (memmove semantics, as the CPU).
            if (srcAt == dstAt)
            {
                return;
            }

            nint staging = (nint)CopyStaging.Ensure(bytes);
            CopyBytes(from, srcAt, staging, 0, bytes);
            from = staging;
            srcAt = 0;
        }

        CopyBytes(from, srcAt, to, dstAt, bytes);
    }

    private void CopyBytes(nint from, long fromOffset, nint to, long toOffset, long bytes) =>
        ClNative.Check(ClNative.EnqueueCopyBuffer(queue, from, to, (nuint)fromOffset, (nuint)toOffset, (nuint)bytes, 0, null, null),
            "clEnqueueCopyBuffer");

    protected override void FillCore(Tensor dst, float value)
    {
        if (dst.Length == 0)
        {
            return;
        }

        ClNative.Check(ClNative.EnqueueFillBuffer(queue, Mem(dst), &value, 4, (nuint)(dst.Offset * 4), (nuint)(dst.Length * 4), 0, null, null),
            "clEnqueueFillBuffer");
    }

    protected override void ZeroCore(Tensor dst)
    {
        if (dst.Length > 0)
        {
            ZeroBytes(Mem(dst), dst.Offset * 4, dst.Length * 4);
        }
    }

    /// <summary>Queues a zero fill of <paramref name="bytes"/> bytes (a multiple of 4) at <paramref name="offset"/>.</summary>
    internal void ZeroBytes(nint mem, long offset, long bytes)
    {
        int zero = 0;
        ClNative.Check(ClNative.EnqueueFillBuffer(queue, mem, &zero, 4, (nuint)offset, (nuint)bytes, 0, null, null), "clEnqueueFillBuffer");
    }

    protected override void DisposeCore()
    {
        ClNative.Finish(queue);
        ReleaseKernelsAndScratch();
        ClNative.ReleaseMemObject(dummy);
        ClNative.ReleaseCommandQueue(queue);
    }

    // ---- kernels and launches ----

    /// <summary>The cl_mem behind a view (the placeholder for the empty tensor).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal nint Mem(Tensor t) => t.Buffer is ClBuffer b ? b.Mem : dummy;

    protected override ulong Address(Tensor t) => (ulong)Mem(t);

    /// <summary>Creates a kernel object from the program of <paramref name="file"/> built with <paramref name="options"/>.</summary>
    protected override nint LoadKernel(string file, string options, string name)
    {
        nint program = Context.Program(file, ClSources.For(file), options);
        byte[] bytes = System.Text.Encoding.ASCII.GetBytes(name + "\0");
        int code;
        nint kernel;
        fixed (byte* p = bytes)
        {
            kernel = ClNative.CreateKernel(program, p, &code);
        }

        ClNative.Check(code, "clCreateKernel", $"{name} in {file}");
        return kernel;
    }

    protected override void ReleaseKernel(nint kernel) => ClNative.ReleaseKernel(kernel);

    // The value is read from the low bytes of bits: every supported host is little-endian.
    protected override void SetArgument(nint kernel, string name, int index, ulong bits, int size)
    {
        int code = ClNative.SetKernelArg(kernel, (uint)index, (nuint)size, &bits);
        if (code != ClNative.Success)
        {
            throw new ClException("clSetKernelArg", code, $"{name} argument {index}");
        }
    }

    /// <summary>A __local buffer argument of <paramref name="bytes"/> bytes.</summary>
    protected override bool SetLocalArgument(nint kernel, string name, int index, long bytes)
    {
        ClNative.Check(ClNative.SetKernelArg(kernel, (uint)index, (nuint)bytes, null), "clSetKernelArg", name);
        return true;
    }

    /// <summary>Enqueues an NDRange of the global sizes rounded up to multiples of the local sizes.</summary>
    protected override void Launch(in KernelArgs args, int dims, long g0, long g1, long g2, int l0, int l1, int l2)
    {
        nuint* global = stackalloc nuint[3];
        nuint* local = stackalloc nuint[3];
        global[0] = (nuint)RoundUp(g0, l0);
        global[1] = (nuint)RoundUp(g1, l1);
        global[2] = (nuint)RoundUp(g2, l2);
        local[0] = (nuint)l0;
        local[1] = (nuint)l1;
        local[2] = (nuint)l2;
        ClNative.Check(ClNative.EnqueueNDRangeKernel(queue, args.Kernel, (uint)dims, null, global, local, 0, null, null),
            "clEnqueueNDRangeKernel", args.Name);
    }

    protected override ulong AllocateScratch(long bytes, string what)
    {
        int code;
        nint mem = ClNative.CreateBuffer(Context.Handle, ClNative.MemReadWrite, (nuint)bytes, null, &code);
        ClNative.Check(code, "clCreateBuffer", what);
        return (ulong)mem;
    }

    // Safe while queued kernels still use it: the driver releases a cl_mem only after the commands using it complete.
    protected override void FreeScratch(ulong address, bool inUse) => ClNative.ReleaseMemObject((nint)address);
}

using Engine.Core;
using Engine.Kernels.Cuda.Interop;

namespace Engine.Kernels.Cuda;

/// <summary>
/// Device memory: one cuMemAlloc allocation of <c>4 * length</c> bytes (plain device memory, not
/// managed), owned by the accelerator that allocated it and zero-filled on allocation (queued on
/// the accelerator's stream, so every later op sees zeros). Views pass the base pointer and an
/// element offset to the kernels.
/// </summary>
internal sealed unsafe class CudaBuffer : DeviceBuffer
{
    private readonly nint context;

    public CudaBuffer(CudaAccelerator owner, long length, DType type) : base(owner, length, type)
    {
        long bytes = checked(length * 4);
        context = owner.Context.Handle;
        ulong ptr = 0;
        using (owner.Context.Enter())
        {
            CuNative.Check(CuNative.MemAlloc(&ptr, (nuint)bytes), "cuMemAlloc_v2", $"{bytes} bytes on {owner.Info.Name}");
        }

        Ptr = ptr;
        owner.ZeroBytes(ptr, bytes);
    }

    ~CudaBuffer()
    {
        try
        {
            Free();
        }
        catch (CudaException)
        {
            // A finalizer must not throw; the driver reclaims the memory with the context.
        }
    }

    /// <summary>The device address (0 once released).</summary>
    public ulong Ptr { get; private set; }

    protected override void Release()
    {
        // Kernels still queued on the stream may use this memory: let them finish first. (The
        // finalizer cannot do this, the accelerator being single-threaded; it relies on cuMemFree
        // synchronising the device, as cudaFree does.)
        if (!Owner.IsDisposed)
        {
            Owner.Synchronize();
        }

        Free();
    }

    private void Free()
    {
        if (Ptr != 0)
        {
            using (new CudaContextScope(context))
            {
                CuNative.MemFree(Ptr);
            }

            Ptr = 0;
        }
    }
}

/// <summary>
/// A scratch buffer an accelerator keeps for its kernels (reduction partials, LM-head logits,
/// sampling values): grown on demand, never shrunk, released with the accelerator.
/// </summary>
internal sealed unsafe class CudaScratch : IDisposable
{
    private readonly CudaAccelerator owner;
    private readonly string purpose;

    public CudaScratch(CudaAccelerator owner, string purpose)
    {
        this.owner = owner;
        this.purpose = purpose;
    }

    /// <summary>The current device address (0 before the first <see cref="Ensure"/>).</summary>
    public ulong Ptr { get; private set; }

    /// <summary>Its size in bytes.</summary>
    public long Bytes { get; private set; }

    /// <summary>A buffer of at least <paramref name="bytes"/> bytes (contents undefined).</summary>
    public ulong Ensure(long bytes)
    {
        if (bytes <= Bytes)
        {
            return Ptr;
        }

        // The old buffer may still be in use by queued kernels: let them finish before freeing it.
        owner.Synchronize();
        Dispose();
        long size = Math.Max(bytes, 256);
        ulong ptr = 0;
        using (owner.Context.Enter())
        {
            CuNative.Check(CuNative.MemAlloc(&ptr, (nuint)size), "cuMemAlloc_v2", $"{size} bytes of {purpose} scratch on {owner.Info.Name}");
        }

        Ptr = ptr;
        Bytes = size;
        return ptr;
    }

    public void Dispose()
    {
        if (Ptr != 0)
        {
            using (owner.Context.Enter())
            {
                CuNative.MemFree(Ptr);
            }

            Ptr = 0;
            Bytes = 0;
        }
    }
}

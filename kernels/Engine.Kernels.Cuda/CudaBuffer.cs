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

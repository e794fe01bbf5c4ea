using Engine.Core;
using Engine.Kernels.OpenCL.Interop;

namespace Engine.Kernels.OpenCL;

/// <summary>
/// Device memory: one cl_mem of <c>4 * length</c> bytes, owned by the accelerator that allocated
/// it and zero-filled on allocation (queued on the accelerator's in-order queue, so every later op
/// sees zeros). Views pass the cl_mem and an element offset to the kernels; no sub-buffers.
/// </summary>
internal sealed unsafe class ClBuffer : DeviceBuffer
{
    public ClBuffer(ClAccelerator owner, long length, DType type) : base(owner, length, type)
    {
        long bytes = checked(length * 4);
        if (bytes > owner.Context.MaxAllocBytes)
        {
            throw new ClException("clCreateBuffer", -61,
                $"{bytes} bytes exceed the largest buffer {owner.Info.Name} allows ({owner.Context.MaxAllocBytes} bytes)");
        }

        int code;
        Mem = ClNative.CreateBuffer(owner.Context.Handle, ClNative.MemReadWrite, (nuint)bytes, null, &code);
        ClNative.Check(code, "clCreateBuffer", $"{bytes} bytes on {owner.Info.Name}");
        owner.ZeroBytes(Mem, 0, bytes);
    }

    ~ClBuffer()
    {
        if (Mem != 0)
        {
            ClNative.ReleaseMemObject(Mem);
        }
    }

    /// <summary>The cl_mem (0 once released).</summary>
    public nint Mem { get; private set; }

    protected override void Release()
    {
        // The driver frees the memory once the commands already queued on it have finished.
        if (Mem != 0)
        {
            ClNative.ReleaseMemObject(Mem);
            Mem = 0;
        }
    }
}

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

/// <summary>
/// A scratch buffer an accelerator keeps for its kernels (reduction partials, LM-head logits,
/// sampling values): grown on demand, never shrunk, released with the accelerator. Replacing it
/// while queued kernels still use the old one is safe: the driver releases a cl_mem only after
/// the commands using it complete.
/// </summary>
internal sealed unsafe class ClScratch : IDisposable
{
    private readonly ClAccelerator owner;
    private readonly string purpose;

    public ClScratch(ClAccelerator owner, string purpose)
    {
        this.owner = owner;
        this.purpose = purpose;
    }

    /// <summary>The current cl_mem (0 before the first <see cref="Ensure"/>).</summary>
    public nint Mem { get; private set; }

    /// <summary>Its size in bytes.</summary>
    public long Bytes { get; private set; }

    /// <summary>A buffer of at least <paramref name="bytes"/> bytes (contents undefined).</summary>
    public nint Ensure(long bytes)
    {
        if (bytes <= Bytes)
        {
            return Mem;
        }

        Dispose();
        long size = Math.Max(bytes, 256);
        int code;
        nint mem = ClNative.CreateBuffer(owner.Context.Handle, ClNative.MemReadWrite, (nuint)size, null, &code);
        ClNative.Check(code, "clCreateBuffer", $"{size} bytes of {purpose} scratch on {owner.Info.Name}");
        Mem = mem;
        Bytes = size;
        return mem;
    }

    public void Dispose()
    {
        if (Mem != 0)
        {
            ClNative.ReleaseMemObject(Mem);
            Mem = 0;
            Bytes = 0;
        }
    }
}

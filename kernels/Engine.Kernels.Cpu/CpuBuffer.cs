using System.Runtime.InteropServices;
using Engine.Core;

namespace Engine.Kernels.Cpu;

/// <summary>Host memory, 64-byte aligned so every row start of a packed panel can be a full-width load.</summary>
internal sealed unsafe class CpuBuffer : DeviceBuffer
{
    public CpuBuffer(Accelerator owner, long length, DType type) : base(owner, length, type)
    {
        nuint bytes = (nuint)(length * 4);
        Pointer = NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear(Pointer, bytes);
    }

    ~CpuBuffer()
    {
        NativeMemory.AlignedFree(Pointer);
    }

    /// <summary>Start of the buffer.</summary>
    public void* Pointer { get; private set; }

    protected override void Release()
    {
        NativeMemory.AlignedFree(Pointer);
        Pointer = null;
    }
}

using Engine.Core;
using Engine.Kernels.Cpu;

namespace Engine.Tests.Support;

/// <summary>Accelerators for tests: a CPU accelerator per test class keeps classes independent.</summary>
internal static class TestDevices
{
    /// <summary>A new CPU accelerator with the given thread count (default: the machine's).</summary>
    public static CpuAccelerator Cpu(int threads = 0) => new(threads > 0 ? threads : CpuThreadPool.DefaultThreadCount);

    /// <summary>Allocates a float buffer on <paramref name="acc"/> holding <paramref name="data"/>.</summary>
    public static DeviceBuffer Put(this Accelerator acc, float[] data)
    {
        DeviceBuffer buffer = acc.Allocate(data.Length);
        acc.Upload(buffer.All, data);
        return buffer;
    }

    /// <summary>Allocates an int buffer on <paramref name="acc"/> holding <paramref name="data"/>.</summary>
    public static DeviceBuffer Put(this Accelerator acc, int[] data)
    {
        DeviceBuffer buffer = acc.Allocate(data.Length, DType.I32);
        acc.Upload(buffer.All, data);
        return buffer;
    }

    /// <summary>Downloads a whole buffer.</summary>
    public static float[] Get(this Accelerator acc, DeviceBuffer buffer) => acc.ToArray(buffer.All);
}

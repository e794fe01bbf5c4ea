using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Kernels.Cuda;
using Engine.Kernels.OpenCL;

namespace Engine;

/// <summary>The backends this build of the engine knows, and device selection over them.</summary>
internal static class Backends
{
    /// <summary>
    /// The registry over every backend provider (CPU first). CUDA comes before OpenCL: an NVIDIA GPU
    /// is listed by both, and <c>auto</c> takes the first of equally large devices.
    /// </summary>
    public static AcceleratorRegistry Registry { get; } = new([new CpuProvider(), new CudaProvider(), new ClProvider()]);
}

namespace Engine.Core;

/// <summary>The kind of compute backend a device belongs to.</summary>
public enum DeviceKind
{
    /// <summary>The managed SIMD CPU backend (the default and the reference).</summary>
    Cpu,

    /// <summary>A device reached through an OpenCL platform.</summary>
    OpenCL,

    /// <summary>An NVIDIA GPU reached through the CUDA driver API.</summary>
    Cuda,
}

/// <summary>Describes one compute device that the engine can run on.</summary>
/// <param name="Kind">The backend that drives the device.</param>
/// <param name="Index">The device's index among the devices of its kind, as used in <c>kind:index</c> specs.</param>
/// <param name="Name">A human-readable device name.</param>
/// <param name="MemoryBytes">Device memory in bytes (for the CPU, the process's usable memory).</param>
/// <param name="ComputeUnits">Cores, compute units or multiprocessors the device offers.</param>
/// <param name="Details">Backend-specific details such as the driver version or instruction sets.</param>
public sealed record DeviceInfo(DeviceKind Kind, int Index, string Name, long MemoryBytes, int ComputeUnits, string Details)
{
    /// <summary>
    /// True when the device is a host CPU (the CPU backend, or an OpenCL platform such as PoCL that
    /// runs on the CPU); <c>auto</c> prefers devices that are not.
    /// </summary>
    public bool IsHostCpu { get; init; }

    /// <summary>The device spec string that selects this device, e.g. <c>cpu</c> or <c>opencl:0</c>.</summary>
    public string Spec => Kind == DeviceKind.Cpu ? "cpu" : $"{Kind.ToString().ToLowerInvariant()}:{Index}";

    /// <inheritdoc />
    public override string ToString() => $"{Spec} ({Name})";
}

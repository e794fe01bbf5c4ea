namespace Engine.Core;

/// <summary>Describes one compute device that the engine can run on.</summary>
/// <param name="Provider">
/// The name of the backend that drives the device, as written in device specs (<c>cpu</c>,
/// <c>opencl</c>, <c>cuda</c>: the backends register themselves under these names).
/// </param>
/// <param name="Index">The device's index among the devices of its provider, as used in <c>provider:index</c> specs.</param>
/// <param name="Name">A human-readable device name.</param>
/// <param name="MemoryBytes">Device memory in bytes (for the CPU, the process's usable memory).</param>
/// <param name="ComputeUnits">Cores, compute units or multiprocessors the device offers.</param>
/// <param name="Details">Backend-specific details such as the driver version or instruction sets.</param>
public sealed record DeviceInfo(string Provider, int Index, string Name, long MemoryBytes, int ComputeUnits, string Details)
{
    /// <summary>
    /// True when the device is a host CPU (the CPU backend, or an OpenCL platform such as PoCL that
    /// runs on the CPU); <c>auto</c> prefers devices that are not.
    /// </summary>
    public bool IsHostCpu { get; init; }

    /// <summary>
    /// The device spec string that selects this device: <c>provider:index</c> (e.g. <c>opencl:0</c>),
    /// or just the provider's name for a provider with a single device (<c>cpu</c>).
    /// </summary>
    public string Spec { get; init; } = $"{Provider}:{Index}";

    /// <inheritdoc />
    public override string ToString() => $"{Spec} ({Name})";
}

using Engine.Core;

namespace Engine;

/// <summary>The compute devices this machine offers, and how to name them.</summary>
public static class Devices
{
    /// <summary>
    /// Every device of every backend (the CPU first). Probing never throws: a missing driver or
    /// library just means no devices of that kind.
    /// </summary>
    public static IReadOnlyList<DeviceInfo> List() => Backends.Registry.ListDevices();

    /// <summary>
    /// Resolves a device spec (<c>cpu</c>, <c>auto</c>, <c>opencl</c>, <c>opencl:1</c>, <c>cuda:0</c>,
    /// <c>opencl:name-part</c>); null uses the ENGINE_DEVICE environment variable, then the CPU.
    /// Throws <see cref="EngineException"/> when no such device exists.
    /// </summary>
    public static DeviceInfo Resolve(string? spec = null) => Backends.Registry.Resolve(spec);
}

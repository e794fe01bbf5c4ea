namespace Engine.Core;

/// <summary>A backend that can enumerate its devices and open accelerators on them.</summary>
internal interface IAcceleratorProvider
{
    /// <summary>The kind of device this provider drives.</summary>
    DeviceKind Kind { get; }

    /// <summary>Lists the devices. Never throws: a missing library or driver means no devices.</summary>
    IReadOnlyList<DeviceInfo> Probe();

    /// <summary>Opens an accelerator on one of the devices <see cref="Probe"/> returned.</summary>
    Accelerator Create(DeviceInfo device);

    /// <summary>Why probing found no devices (a missing library or driver ...), for error messages; null when nothing failed.</summary>
    string? ProbeProblem => null;
}

/// <summary>
/// Device selection over a set of providers. A spec is <c>cpu</c>, <c>auto</c> (the GPU with the
/// most memory, else the CPU backend; OpenCL platforms that run on the CPU are never chosen), <c>kind</c> (its first device), <c>kind:index</c> or
/// <c>kind:name-substring</c>, with kind one of cpu, opencl, cuda. When no spec is given the
/// <c>ENGINE_DEVICE</c> environment variable is used, and then <c>cpu</c>.
/// </summary>
internal sealed class AcceleratorRegistry
{
    /// <summary>The environment variable that picks the device when no spec is given.</summary>
    public const string EnvironmentVariable = "ENGINE_DEVICE";

    private readonly IAcceleratorProvider[] providers;

    public AcceleratorRegistry(IEnumerable<IAcceleratorProvider> providers) => this.providers = providers.ToArray();

    /// <summary>Every device of every provider, CPU first.</summary>
    public IReadOnlyList<DeviceInfo> ListDevices() => providers.SelectMany(p => p.Probe()).ToList();

    /// <summary>Resolves a spec (see the class summary) to one device, or throws naming the problem.</summary>
    public DeviceInfo Resolve(string? spec)
    {
        spec = string.IsNullOrWhiteSpace(spec) ? Environment.GetEnvironmentVariable(EnvironmentVariable) : spec;
        spec = string.IsNullOrWhiteSpace(spec) ? "cpu" : spec.Trim();
        string lower = spec.ToLowerInvariant();
        if (lower == "auto")
        {
            var all = ListDevices();
            return all.Where(d => d.Kind != DeviceKind.Cpu && !d.IsHostCpu).OrderByDescending(d => d.MemoryBytes).FirstOrDefault()
                   ?? all.First(d => d.Kind == DeviceKind.Cpu);
        }

        int colon = spec.IndexOf(':', StringComparison.Ordinal);
        string kindText = colon < 0 ? lower : lower[..colon];
        string? selector = colon < 0 ? null : spec[(colon + 1)..].Trim();
        DeviceKind kind = kindText switch
        {
            "cpu" => DeviceKind.Cpu,
            "opencl" or "cl" => DeviceKind.OpenCL,
            "cuda" => DeviceKind.Cuda,
            _ => throw new EngineException($"unknown device '{spec}': expected cpu, opencl[:N|:name], cuda[:N|:name] or auto"),
        };
        IAcceleratorProvider? provider = providers.FirstOrDefault(p => p.Kind == kind);
        IReadOnlyList<DeviceInfo> devices = provider?.Probe() ?? [];
        if (devices.Count == 0)
        {
            string? problem = provider?.ProbeProblem;
            throw new EngineException($"no {kind} devices found for device spec '{spec}'{(problem is null ? "" : $" ({problem})")}");
        }

        if (string.IsNullOrEmpty(selector))
        {
            return devices[0];
        }

        if (int.TryParse(selector, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int index))
        {
            return devices.FirstOrDefault(d => d.Index == index)
                   ?? throw new EngineException($"device '{spec}' does not exist: {kind} has devices {string.Join(", ", devices.Select(d => d.Index))}");
        }

        return devices.FirstOrDefault(d => d.Name.Contains(selector, StringComparison.OrdinalIgnoreCase))
               ?? throw new EngineException($"no {kind} device name contains '{selector}' (have: {string.Join("; ", devices.Select(d => d.Name))})");
    }

    /// <summary>Opens an accelerator on the device a spec names.</summary>
    public Accelerator Open(string? spec)
    {
        DeviceInfo device = Resolve(spec);
        return providers.First(p => p.Kind == device.Kind).Create(device);
    }
}

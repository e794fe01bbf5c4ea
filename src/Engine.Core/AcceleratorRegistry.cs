using System.Diagnostics.CodeAnalysis;

namespace Engine.Core;

/// <summary>A backend that can enumerate its devices and open accelerators on them.</summary>
internal interface IAcceleratorProvider
{
    /// <summary>The provider's name, lower case: the first part of the device specs that select its devices (<c>cuda:0</c>).</summary>
    string Name { get; }

    /// <summary>Other names a spec may use for this provider (<c>cl</c> for <c>opencl</c>).</summary>
    IReadOnlyList<string> Aliases => [];

    /// <summary>
    /// Where the provider's devices come in device lists, lowest first. <c>auto</c> takes the first of
    /// equally large devices, so a backend that reaches a device more directly (CUDA) comes before
    /// one that lists the same device too (OpenCL); the reference backend (the CPU) is lowest of all
    /// and is the default when no spec is given.
    /// </summary>
    int Precedence { get; }

    /// <summary>Lists the devices. Never throws: a missing library or driver means no devices.</summary>
    IReadOnlyList<DeviceInfo> Probe();

    /// <summary>Opens an accelerator on one of the devices <see cref="Probe"/> returned.</summary>
    Accelerator Create(DeviceInfo device);

    /// <summary>Why probing found no devices (a missing library or driver ...), for error messages; null when nothing failed.</summary>
    string? ProbeProblem => null;
}

/// <summary>
/// Marks an assembly as a backend plug-in: the host finds the provider type through this attribute
/// when it probes the assemblies next to the engine's (see <c>Engine.Backends</c>).
/// </summary>
/// <param name="providerType">An <see cref="IAcceleratorProvider"/> with a public parameterless constructor.</param>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
internal sealed class AcceleratorProviderAttribute(
    [DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicParameterlessConstructor)] Type providerType) : Attribute
{
    /// <summary>The provider type the assembly offers.</summary>
    [DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicParameterlessConstructor)]
    public Type ProviderType { get; } = providerType;
}

/// <summary>
/// Device selection over a set of providers, which name themselves: the registry knows no backend.
/// A spec is <c>auto</c> (the non-CPU device with the most memory, else the default provider's
/// first device; OpenCL platforms that run on the CPU are never chosen), <c>provider</c> (its first
/// device), <c>provider:index</c> or <c>provider:name-substring</c>. When no spec is given the
/// <c>ENGINE_DEVICE</c> environment variable is used, and then the default provider (the one of
/// lowest <see cref="IAcceleratorProvider.Precedence"/>: the CPU).
/// </summary>
internal sealed class AcceleratorRegistry
{
    /// <summary>The environment variable that picks the device when no spec is given.</summary>
    public const string EnvironmentVariable = "ENGINE_DEVICE";

    private readonly IAcceleratorProvider[] providers;

    /// <summary>Takes the providers (at least one; names unique), ordering them by precedence.</summary>
    public AcceleratorRegistry(IEnumerable<IAcceleratorProvider> providers)
    {
        this.providers = providers.OrderBy(p => p.Precedence).ToArray();
        if (this.providers.Length == 0)
        {
            throw new ArgumentException("a registry needs at least one provider", nameof(providers));
        }

        var duplicate = this.providers.SelectMany(p => p.Aliases.Prepend(p.Name)).GroupBy(n => n).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new ArgumentException($"two providers are named '{duplicate.Key}'", nameof(providers));
        }
    }

    /// <summary>The providers' names, default first.</summary>
    public IReadOnlyList<string> ProviderNames => providers.Select(p => p.Name).ToList();

    /// <summary>Every device of every provider, the default provider's first.</summary>
    public IReadOnlyList<DeviceInfo> ListDevices() => providers.SelectMany(p => p.Probe()).ToList();

    /// <summary>Resolves a spec (see the class summary) to one device, or throws naming the problem.</summary>
    public DeviceInfo Resolve(string? spec)
    {
        spec = string.IsNullOrWhiteSpace(spec) ? Environment.GetEnvironmentVariable(EnvironmentVariable) : spec;
        spec = string.IsNullOrWhiteSpace(spec) ? providers[0].Name : spec.Trim();
        string lower = spec.ToLowerInvariant();
        if (lower == "auto")
        {
            var all = ListDevices();
            return all.Where(d => d.Provider != providers[0].Name && !d.IsHostCpu).OrderByDescending(d => d.MemoryBytes).FirstOrDefault()
                   ?? providers[0].Probe()[0];
        }

        int colon = spec.IndexOf(':', StringComparison.Ordinal);
        string name = colon < 0 ? lower : lower[..colon];
        string? selector = colon < 0 ? null : spec[(colon + 1)..].Trim();
        IAcceleratorProvider provider = providers.FirstOrDefault(p => p.Name == name || p.Aliases.Contains(name))
            ?? throw new EngineException($"unknown device '{spec}': expected {string.Join(", ", providers.Select(p => $"{p.Name}[:N|:name]"))} or auto");
        IReadOnlyList<DeviceInfo> devices = provider.Probe();
        if (devices.Count == 0)
        {
            string? problem = provider.ProbeProblem;
            throw new EngineException($"no {provider.Name} devices found for device spec '{spec}'{(problem is null ? "" : $" ({problem})")}");
        }

        if (string.IsNullOrEmpty(selector))
        {
            return devices[0];
        }

        if (int.TryParse(selector, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int index))
        {
            return devices.FirstOrDefault(d => d.Index == index)
                   ?? throw new EngineException($"device '{spec}' does not exist: {provider.Name} has devices {string.Join(", ", devices.Select(d => d.Index))}");
        }

        return devices.FirstOrDefault(d => d.Name.Contains(selector, StringComparison.OrdinalIgnoreCase))
               ?? throw new EngineException($"no {provider.Name} device name contains '{selector}' (have: {string.Join("; ", devices.Select(d => d.Name))})");
    }

    /// <summary>Opens an accelerator on the device a spec names.</summary>
    public Accelerator Open(string? spec)
    {
        DeviceInfo device = Resolve(spec);
        return providers.First(p => p.Name == device.Provider).Create(device);
    }
}

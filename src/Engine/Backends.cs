using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Runtime.Loader;
using Engine.Core;
using Engine.Kernels.Cpu;

namespace Engine;

/// <summary>
/// The backends this process knows, and device selection over them. The engine carries the CPU
/// backend only; the GPU backends are plug-ins (assemblies marked with
/// <see cref="AcceleratorProviderAttribute"/>), found at run time in two ways:
/// <list type="bullet">
/// <item>probing: the <c>Engine.Kernels.*.dll</c> assemblies next to the engine's (and in the app's
/// folder) are loaded and their attribute read. The NuGet package carries the OpenCL and CUDA
/// backends, so an app that references it finds them this way.</item>
/// <item>registration by the host (<see cref="Register"/>): an app published as a single file has no
/// assemblies to probe, so it references the backends and registers their providers itself
/// (the CLI does).</item>
/// </list>
/// </summary>
internal static class Backends
{
    /// <summary>The file names probed for plug-ins.</summary>
    private const string PluginPattern = "Engine.Kernels.*.dll";

    private static readonly Lock Gate = new();
    private static readonly List<IAcceleratorProvider> Registered = [];
    private static AcceleratorRegistry? registry;

    /// <summary>
    /// The registry over the CPU provider, the registered providers and the probed ones (a probed
    /// provider whose name is already registered is skipped), in order of precedence.
    /// </summary>
    public static AcceleratorRegistry Registry
    {
        get
        {
            lock (Gate)
            {
                return registry ??= Build();
            }
        }
    }

    /// <summary>
    /// Registers backend providers the host carries; call before the first device is opened (a
    /// registry built earlier is rebuilt; accelerators already open stay valid). A provider whose
    /// name is already registered is ignored.
    /// </summary>
    public static void Register(params IAcceleratorProvider[] providers)
    {
        ArgumentNullException.ThrowIfNull(providers);
        lock (Gate)
        {
            foreach (IAcceleratorProvider provider in providers)
            {
                if (provider.Name != CpuProvider.ProviderName && Registered.All(p => p.Name != provider.Name))
                {
                    Registered.Add(provider);
                }
            }

            registry = null;
        }
    }

    private static AcceleratorRegistry Build()
    {
        var providers = new List<IAcceleratorProvider> { new CpuProvider() };
        providers.AddRange(Registered);
        foreach (IAcceleratorProvider found in Probe())
        {
            if (providers.All(p => p.Name != found.Name))
            {
                providers.Add(found);
            }
        }

        return new AcceleratorRegistry(providers);
    }

    /// <summary>
    /// The providers of the plug-in assemblies in the engine's folder and the app's. Never throws:
    /// an assembly that fails to load or to create its provider is left out (as a missing driver is).
    /// </summary>
    [UnconditionalSuppressMessage("Trimming", "IL2026",
        Justification = "Loads plug-ins from files next to the engine's assembly; a trimmed single-file app has none there and registers its providers with Register.")]
    [UnconditionalSuppressMessage("SingleFile", "IL3000",
        Justification = "An empty location (single-file app) leaves the app's folder to probe; such an app registers its providers with Register.")]
    private static List<IAcceleratorProvider> Probe()
    {
        var found = new List<IAcceleratorProvider>();
        string engineFolder = Path.GetDirectoryName(typeof(Backends).Assembly.Location) ?? "";
        string[] folders = [.. new[] { engineFolder, AppContext.BaseDirectory }.Where(f => f.Length > 0 && Directory.Exists(f))
            .Select(Path.GetFullPath).Distinct(StringComparer.Ordinal)];
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (string file in folders.SelectMany(f => Directory.EnumerateFiles(f, PluginPattern)).Order(StringComparer.Ordinal))
        {
            if (!seen.Add(Path.GetFileNameWithoutExtension(file)))
            {
                continue;
            }

            try
            {
                Assembly assembly = Load(file);
                foreach (AcceleratorProviderAttribute plugin in assembly.GetCustomAttributes<AcceleratorProviderAttribute>())
                {
                    if (Activator.CreateInstance(plugin.ProviderType) is IAcceleratorProvider provider)
                    {
                        found.Add(provider);
                    }
                }
            }
            catch (Exception e) when (e is IOException or BadImageFormatException or TypeLoadException or TargetInvocationException
                                          or MissingMethodException or UnauthorizedAccessException)
            {
                // Not a loadable plug-in: as if it were not there.
            }
        }

        return found;
    }

    /// <summary>The assembly in a file: the one already loaded under its name, else by name (the app's dependencies), else from the file.</summary>
    [RequiresUnreferencedCode("Loads an assembly from a file.")]
    private static Assembly Load(string file)
    {
        var name = AssemblyName.GetAssemblyName(file);
        Assembly? loaded = AssemblyLoadContext.Default.Assemblies.FirstOrDefault(a => AssemblyName.ReferenceMatchesDefinition(a.GetName(), name));
        if (loaded is not null)
        {
            return loaded;
        }

        try
        {
            return AssemblyLoadContext.Default.LoadFromAssemblyName(name);
        }
        catch (FileNotFoundException)
        {
            return AssemblyLoadContext.Default.LoadFromAssemblyPath(file);
        }
    }
}

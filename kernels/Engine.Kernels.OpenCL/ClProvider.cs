using System.Globalization;
using Engine.Core;
using Engine.Kernels.OpenCL.Interop;

[assembly: AcceleratorProvider(typeof(Engine.Kernels.OpenCL.ClProvider))]

namespace Engine.Kernels.OpenCL;

/// <summary>
/// The OpenCL backend's provider: every device of every platform the ICD loader reports, indexed
/// across platforms in the loader's order (platform 0's devices first). Probing never throws and
/// runs once per process: no loader, no platform or any failure means no OpenCL devices.
/// </summary>
/// <remarks>
/// Devices without an online compiler, or whose OpenCL C is older than 1.2, are left out: the
/// kernels are compiled from source at run time and use OpenCL C 1.2.
/// </remarks>
internal sealed class ClProvider : IAcceleratorProvider
{
    private static readonly Lazy<IReadOnlyList<ClDeviceHandle>> Devices = new(ProbeAll, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The name in device specs (<c>opencl:0</c>).</summary>
    public const string ProviderName = "opencl";

    public string Name => ProviderName;

    public IReadOnlyList<string> Aliases => ["cl"];

    /// <summary>After CUDA, which drives an NVIDIA GPU that OpenCL lists too.</summary>
    public int Precedence => 20;

    /// <summary>Why the last probe found nothing, when it failed (for diagnostics; null otherwise).</summary>
    public static string? ProbeError { get; private set; }

    public string? ProbeProblem => ProbeError;

    /// <summary>The OpenCL devices of this machine (cached after the first call).</summary>
    public IReadOnlyList<DeviceInfo> Probe() => Devices.Value.Select(d => d.Info).ToList();

    public Accelerator Create(DeviceInfo device)
    {
        ArgumentNullException.ThrowIfNull(device);
        ClDeviceHandle handle = Devices.Value.FirstOrDefault(d => d.Info.Index == device.Index && d.Info.Provider == device.Provider)
            ?? throw new EngineException($"OpenCL device {device.Spec} does not exist on this machine");
        return new ClAccelerator(handle);
    }

    /// <summary>The device behind a probed <see cref="DeviceInfo"/> (tests and tools).</summary>
    internal static ClDeviceHandle? Find(int index) => Devices.Value.FirstOrDefault(d => d.Info.Index == index);

    private static unsafe IReadOnlyList<ClDeviceHandle> ProbeAll()
    {
        var result = new List<ClDeviceHandle>();
        try
        {
            if (!ClNative.TryLoad())
            {
                ProbeError = ClNative.LoadError;
                return result;
            }

            uint platformCount = 0;
            int code = ClNative.GetPlatformIDs(0, null, &platformCount);
            if (code != ClNative.Success || platformCount == 0)
            {
                ProbeError = code == ClNative.Success ? "no OpenCL platform" : $"clGetPlatformIDs: {ClErrors.Name(code)}";
                return result;
            }

            var platforms = new nint[platformCount];
            fixed (nint* p = platforms)
            {
                ClNative.Check(ClNative.GetPlatformIDs(platformCount, p, null), "clGetPlatformIDs");
            }

            foreach (nint platform in platforms)
            {
                try
                {
                    AddDevices(platform, result);
                }
                catch (Exception e) when (e is EngineException or InvalidOperationException or ArgumentException)
                {
                    ProbeError = e.Message; // one broken platform does not hide the others
                }
            }
        }
#pragma warning disable CA1031 // probing must never throw: any failure means "no devices"
        catch (Exception e)
#pragma warning restore CA1031
        {
            ProbeError = e.Message;
        }

        return result;
    }

    private static unsafe void AddDevices(nint platform, List<ClDeviceHandle> result)
    {
        uint count = 0;
        int code = ClNative.GetDeviceIDs(platform, ClNative.DeviceTypeAll, 0, null, &count);
        if (code != ClNative.Success || count == 0)
        {
            return; // CL_DEVICE_NOT_FOUND: a platform without devices
        }

        var devices = new nint[count];
        fixed (nint* d = devices)
        {
            ClNative.Check(ClNative.GetDeviceIDs(platform, ClNative.DeviceTypeAll, count, d, null), "clGetDeviceIDs");
        }

        string platformName = ClNative.PlatformString(platform, ClNative.PlatformName);
        foreach (nint device in devices)
        {
            if (ClNative.DeviceValue<uint>(device, ClNative.DeviceAvailable) == 0 ||
                ClNative.DeviceValue<uint>(device, ClNative.DeviceCompilerAvailable) == 0)
            {
                continue;
            }

            string cVersion = ClNative.DeviceString(device, ClNative.DeviceOpenClCVersion);
            if (!SupportsC12(cVersion))
            {
                continue;
            }

            string name = ClNative.DeviceString(device, ClNative.DeviceName);
            string driver = ClNative.DeviceString(device, ClNative.DriverVersion);
            string version = ClNative.DeviceString(device, ClNative.DeviceVersion);
            string extensions = ClNative.DeviceString(device, ClNative.DeviceExtensions);
            ulong type = ClNative.DeviceValue<ulong>(device, ClNative.DeviceType);
            ulong memory = ClNative.DeviceValue<ulong>(device, ClNative.DeviceGlobalMemSize);
            uint units = ClNative.DeviceValue<uint>(device, ClNative.DeviceMaxComputeUnits);
            bool fp64 = extensions.Contains("cl_khr_fp64", StringComparison.Ordinal);
            string typeName = (type & ClNative.DeviceTypeGpu) != 0 ? "GPU"
                : (type & ClNative.DeviceTypeCpu) != 0 ? "CPU"
                : (type & ClNative.DeviceTypeAccelerator) != 0 ? "accelerator" : "other";
            string details = string.Create(CultureInfo.InvariantCulture,
                $"platform {platformName}; {typeName}; {version}; driver {driver}; {cVersion}{(fp64 ? "; fp64" : "")}");
            var info = new DeviceInfo(ProviderName, result.Count, name, (long)Math.Min(memory, long.MaxValue), (int)units, details)
            {
                IsHostCpu = (type & ClNative.DeviceTypeCpu) != 0,
            };
            result.Add(new ClDeviceHandle(info, platform, device, name, driver, version, platformName,
                (type & ClNative.DeviceTypeCpu) != 0));
        }
    }

    /// <summary>True for "OpenCL C 1.2 ..." and later.</summary>
    internal static bool SupportsC12(string cVersion)
    {
        // "OpenCL C <major>.<minor> <vendor-specific>"
        string[] parts = cVersion.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length < 3 || !Version.TryParse(parts[2], out Version? v))
        {
            return false;
        }

        return v >= new Version(1, 2);
    }
}

/// <summary>A probed OpenCL device: its description and the native ids behind it.</summary>
internal sealed record ClDeviceHandle(DeviceInfo Info, nint Platform, nint Device, string Name, string Driver, string Version,
    string PlatformName, bool IsCpu)
{
    private ClDeviceContext? context;

    /// <summary>The process-wide context of this device (created on first use, never released).</summary>
    public ClDeviceContext Context
    {
        get
        {
            if (context is null)
            {
                var created = new ClDeviceContext(this);
                if (Interlocked.CompareExchange(ref context, created, null) is not null)
                {
                    created.Dispose();
                }
            }

            return context;
        }
    }
}

using System.Globalization;
using Engine.Core;
using Engine.Kernels.Cuda.Interop;

[assembly: AcceleratorProvider(typeof(Engine.Kernels.Cuda.CudaProvider))]

namespace Engine.Kernels.Cuda;

/// <summary>
/// The CUDA backend's provider: the GPUs the CUDA driver reports, in its ordinal order
/// (<c>cuda:0</c> is the driver's device 0, so <c>CUDA_VISIBLE_DEVICES</c> applies). Probing
/// never throws and runs once per process: no driver, no device or any failure means no CUDA
/// devices. The kernels are compiled at run time by NVRTC, so without an NVRTC library the
/// devices are left out (and <see cref="ProbeError"/> says so).
/// </summary>
internal sealed class CudaProvider : IAcceleratorProvider
{
    private static readonly Lazy<IReadOnlyList<CudaDeviceHandle>> Devices = new(ProbeAll, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The name in device specs (<c>cuda:0</c>).</summary>
    public const string ProviderName = "cuda";

    public string Name => ProviderName;

    /// <summary>Before OpenCL, which lists an NVIDIA GPU too: <c>auto</c> takes CUDA's.</summary>
    public int Precedence => 10;

    /// <summary>Why the last probe found nothing, when it failed (for diagnostics; null otherwise).</summary>
    public static string? ProbeError { get; private set; }

    public string? ProbeProblem => ProbeError;

    /// <summary>The CUDA devices of this machine (cached after the first call).</summary>
    public IReadOnlyList<DeviceInfo> Probe() => Devices.Value.Select(d => d.Info).ToList();

    public Accelerator Create(DeviceInfo device)
    {
        ArgumentNullException.ThrowIfNull(device);
        CudaDeviceHandle handle = Devices.Value.FirstOrDefault(d => d.Info.Index == device.Index && d.Info.Provider == device.Provider)
            ?? throw new EngineException($"CUDA device {device.Spec} does not exist on this machine");
        return new CudaAccelerator(handle);
    }

    /// <summary>The device behind a probed <see cref="DeviceInfo"/> (tests and tools).</summary>
    internal static CudaDeviceHandle? Find(int index) => Devices.Value.FirstOrDefault(d => d.Info.Index == index);

    private static unsafe IReadOnlyList<CudaDeviceHandle> ProbeAll()
    {
        var result = new List<CudaDeviceHandle>();
        try
        {
            if (!CuNative.TryLoad())
            {
                ProbeError = CuNative.LoadError;
                return result;
            }

            int count = 0;
            int code = CuNative.DeviceGetCount(&count);
            if (code != CuNative.Success || count == 0)
            {
                ProbeError = code == CuNative.Success ? "the CUDA driver reports no device" : $"cuDeviceGetCount: {CuNative.Describe(code)}";
                return result;
            }

            if (!CudaCompiler.IsAvailable)
            {
                ProbeError = $"{count} CUDA device(s) left out: {CudaCompiler.UnavailableReason}; the kernels are compiled at run time by NVRTC";
                return result;
            }

            int driver = 0;
            CuNative.Check(CuNative.DriverGetVersion(&driver), "cuDriverGetVersion");
            string nvrtc = CudaCompiler.Version;
            for (int ordinal = 0; ordinal < count; ordinal++)
            {
                try
                {
                    result.Add(Describe(ordinal, result.Count, driver, nvrtc));
                }
                catch (CudaException e)
                {
                    ProbeError = e.Message; // one broken device does not hide the others
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

    private static unsafe CudaDeviceHandle Describe(int ordinal, int index, int driver, string nvrtc)
    {
        int device = 0;
        CuNative.Check(CuNative.DeviceGet(&device, ordinal), "cuDeviceGet");
        string name = CuNative.Name(device);
        nuint memory = 0;
        CuNative.Check(CuNative.DeviceTotalMem(&memory, device), "cuDeviceTotalMem_v2");
        int major = CuNative.Attribute(device, CuNative.AttributeComputeCapabilityMajor);
        int minor = CuNative.Attribute(device, CuNative.AttributeComputeCapabilityMinor);
        int sms = CuNative.Attribute(device, CuNative.AttributeMultiprocessorCount);
        int sharedBytes = CuNative.Attribute(device, CuNative.AttributeMaxSharedMemoryPerBlock);
        int maxThreads = CuNative.Attribute(device, CuNative.AttributeMaxThreadsPerBlock);
        string details = string.Create(CultureInfo.InvariantCulture,
            $"sm_{major}{minor}; {sms} SMs; driver {driver / 1000}.{driver % 1000 / 10}; NVRTC {nvrtc}");
        var info = new DeviceInfo(ProviderName, index, name, (long)Math.Min((ulong)memory, long.MaxValue), sms, details);
        return new CudaDeviceHandle(info, device, ordinal, name, major, minor, driver, sharedBytes, maxThreads);
    }
}

/// <summary>A probed CUDA device: its description, the driver's handle and the limits the kernels depend on.</summary>
/// <param name="Info">The description.</param>
/// <param name="CuDevice">The CUdevice handle.</param>
/// <param name="DriverOrdinal">The driver's ordinal of the device.</param>
/// <param name="Name">The device name.</param>
/// <param name="Major">Compute capability, major.</param>
/// <param name="Minor">Compute capability, minor.</param>
/// <param name="DriverVersion">cuDriverGetVersion (e.g. 12040).</param>
/// <param name="SharedMemoryBytes">Static shared memory per block.</param>
/// <param name="MaxThreadsPerBlock">Largest block.</param>
internal sealed record CudaDeviceHandle(DeviceInfo Info, int CuDevice, int DriverOrdinal, string Name, int Major, int Minor,
    int DriverVersion, int SharedMemoryBytes, int MaxThreadsPerBlock)
{
    private CudaDeviceContext? context;

    /// <summary>The process-wide context of this device (retained on first use, never released).</summary>
    public CudaDeviceContext Context
    {
        get
        {
            if (context is null)
            {
                var created = new CudaDeviceContext(this);
                if (Interlocked.CompareExchange(ref context, created, null) is not null)
                {
                    created.Dispose();
                }
            }

            return context;
        }
    }
}

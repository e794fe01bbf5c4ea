using System.Globalization;
using System.Text;
using Engine.Kernels.Cuda.Interop;
using Engine.Kernels.Gpu;

namespace Engine.Kernels.Cuda;

/// <summary>
/// The device's primary context (retained once per process, the context the CUDA runtime of a host
/// application uses too, so the engine creates none of its own) and the modules compiled for it.
/// Every accelerator on the device shares it (each has its own stream), so a module is compiled
/// once per process: modules are cached by a key over (source, options, architecture target,
/// NVRTC version, driver version), in memory and as images on disk (see <see cref="CudaBinaryCache"/>),
/// so later processes skip the compiler. Thread-safe.
/// </summary>
internal sealed unsafe class CudaDeviceContext : IDisposable
{
    private readonly Dictionary<string, nint> modules = new(StringComparer.Ordinal);
    private readonly Lock gate = new();
    private nint handle;

    public CudaDeviceContext(CudaDeviceHandle device)
    {
        Device = device;
        nint context = 0;
        CuNative.Check(CuNative.DevicePrimaryCtxRetain(&context, device.CuDevice), "cuDevicePrimaryCtxRetain", device.Name);
        handle = context;
        (Target, IsCubin) = CudaCompiler.Target(device.Major, device.Minor);
        NvrtcVersion = CudaCompiler.Version;
    }

    /// <summary>The device.</summary>
    public CudaDeviceHandle Device { get; }

    /// <summary>The primary CUcontext.</summary>
    public nint Handle => handle;

    /// <summary>The architecture option the kernels are compiled with (sm_XY, or compute_XY when NVRTC is older than the device).</summary>
    public string Target { get; }

    /// <summary>True when the kernels are compiled to CUBIN, false for PTX.</summary>
    public bool IsCubin { get; }

    /// <summary>"major.minor" of NVRTC.</summary>
    public string NvrtcVersion { get; }

    /// <summary>Modules compiled from source in this process (for tests of the cache).</summary>
    public int SourceBuilds { get; private set; }

    /// <summary>Modules loaded from the on-disk image cache in this process.</summary>
    public int BinaryLoads { get; private set; }

    /// <summary>Makes the primary context current for a scope (see <see cref="CudaContextScope"/>).</summary>
    public CudaContextScope Enter() => new(handle);

    /// <summary>
    /// The module compiled from <paramref name="source"/> with <paramref name="options"/>: from the
    /// in-memory cache, else from the on-disk image cache, else compiled by NVRTC (and stored in
    /// both). A compile error throws with the NVRTC log in the message.
    /// </summary>
    /// <param name="name">A name for messages (the op-family file).</param>
    /// <param name="source">CUDA C++ source.</param>
    /// <param name="options">Compiler options besides the architecture.</param>
    public nint Module(string name, string source, string options)
    {
        string key = Key(source, options);
        lock (gate)
        {
            if (modules.TryGetValue(key, out nint cached))
            {
                return cached;
            }

            using CudaContextScope scope = Enter();
            nint module = CudaBinaryCache.TryRead(key, Target) is { } stored ? TryLoad(stored) : 0;
            if (module != 0)
            {
                BinaryLoads++;
            }
            else
            {
                CudaImage image = CudaCompiler.Compile(name, source, options, Target, IsCubin);
                SourceBuilds++;
                fixed (byte* p = image.Data)
                {
                    CuNative.Check(CuNative.ModuleLoadData(&module, p), "cuModuleLoadData",
                        $"{name} ({(image.IsCubin ? "CUBIN" : "PTX")} for {Target}) on {Device.Name}");
                }

                CudaBinaryCache.Write(key, image);
            }

            modules[key] = module;
            return module;
        }
    }

    /// <summary>A kernel of a module.</summary>
    public nint Function(nint module, string name, string file)
    {
        byte[] bytes = Encoding.ASCII.GetBytes(name + "\0");
        nint function = 0;
        using CudaContextScope scope = Enter();
        fixed (byte* p = bytes)
        {
            CuNative.Check(CuNative.ModuleGetFunction(&function, module, p), "cuModuleGetFunction", $"{name} in {file}");
        }

        return function;
    }

    /// <summary>The cache key: a SHA-256 over everything that determines the compiled code.</summary>
    public string Key(string source, string options) =>
        KernelBinaryCache.Key(source, options, Target, NvrtcVersion, Device.DriverVersion.ToString(CultureInfo.InvariantCulture), Device.Name);

    /// <summary>A module from a cached image the driver accepts; 0 when it refuses (the caller recompiles).</summary>
    private static nint TryLoad(CudaImage image)
    {
        nint module = 0;
        fixed (byte* p = image.Data)
        {
            return CuNative.ModuleLoadData(&module, p) == CuNative.Success ? module : 0;
        }
    }

    public void Dispose()
    {
        lock (gate)
        {
            if (handle == 0)
            {
                return;
            }

            using (Enter())
            {
                foreach (nint module in modules.Values)
                {
                    CuNative.ModuleUnload(module);
                }
            }

            modules.Clear();
            CuNative.DevicePrimaryCtxRelease(Device.CuDevice);
            handle = 0;
        }
    }
}

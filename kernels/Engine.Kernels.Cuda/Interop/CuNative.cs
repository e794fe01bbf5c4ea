using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Engine.Kernels.Gpu;

[assembly: DisableRuntimeMarshalling]

namespace Engine.Kernels.Cuda.Interop;

/// <summary>
/// A thin binding to the CUDA driver API (<c>libcuda.so.1</c>, <c>nvcuda.dll</c>): one unmanaged
/// function pointer per entry point, resolved at run time with
/// <see cref="NativeLibrary.TryLoad(string, out IntPtr)"/> and <see cref="NativeLibrary.TryGetExport"/>.
/// Versioned entry points are named explicitly (<c>cuMemAlloc_v2</c> ...): the header macros that
/// map the plain names to them do not exist here, and the unversioned exports are the old 32-bit
/// ABI. Loading is a boolean, so a machine without the driver simply has no CUDA devices.
/// </summary>
/// <remarks>
/// Handles (CUcontext, CUmodule, CUfunction, CUstream) are <see cref="nint"/>, CUdevice is an int
/// ordinal handle, CUdeviceptr is <see cref="ulong"/>, results are CUresult codes checked by
/// <see cref="Check(int, string)"/>. Calls act on the calling thread's current context: callers
/// make the device's primary context current around them (see <see cref="CudaContextScope"/>).
/// </remarks>
internal static unsafe class CuNative
{
    // ---- constants (cuda.h) ----
    public const int Success = 0;
    public const int ErrorNoDevice = 100;

    public const int AttributeMaxThreadsPerBlock = 1;
    public const int AttributeMaxSharedMemoryPerBlock = 8;
    public const int AttributeMultiprocessorCount = 16;
    public const int AttributePciBusId = 33;
    public const int AttributeComputeCapabilityMajor = 75;
    public const int AttributeComputeCapabilityMinor = 76;

    /// <summary>CU_STREAM_NON_BLOCKING: no implicit synchronisation with the legacy default stream (the host app's).</summary>
    public const uint StreamNonBlocking = 1;

    // ---- entry points (filled by Load) ----
    public static delegate* unmanaged<uint, int> Init;
    public static delegate* unmanaged<int*, int> DriverGetVersion;
    public static delegate* unmanaged<int*, int> DeviceGetCount;
    public static delegate* unmanaged<int*, int, int> DeviceGet;
    public static delegate* unmanaged<byte*, int, int, int> DeviceGetName;
    public static delegate* unmanaged<int*, int, int, int> DeviceGetAttribute;
    public static delegate* unmanaged<nuint*, int, int> DeviceTotalMem;
    public static delegate* unmanaged<nint*, int, int> DevicePrimaryCtxRetain;
    public static delegate* unmanaged<int, int> DevicePrimaryCtxRelease;
    public static delegate* unmanaged<nint, int> CtxPushCurrent;
    public static delegate* unmanaged<nint*, int> CtxPopCurrent;
    public static delegate* unmanaged<nint*, int> CtxGetCurrent;
    public static delegate* unmanaged<nint*, void*, int> ModuleLoadData;
    public static delegate* unmanaged<nint, int> ModuleUnload;
    public static delegate* unmanaged<nint*, nint, byte*, int> ModuleGetFunction;
    public static delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int> LaunchKernel;
    public static delegate* unmanaged<nint*, uint, int> StreamCreate;
    public static delegate* unmanaged<nint, int> StreamDestroy;
    public static delegate* unmanaged<nint, int> StreamSynchronize;
    public static delegate* unmanaged<ulong*, nuint, int> MemAlloc;
    public static delegate* unmanaged<ulong, int> MemFree;
    public static delegate* unmanaged<ulong, void*, nuint, nint, int> MemcpyHtoDAsync;
    public static delegate* unmanaged<void*, ulong, nuint, nint, int> MemcpyDtoHAsync;
    public static delegate* unmanaged<ulong, ulong, nuint, nint, int> MemcpyDtoDAsync;
    public static delegate* unmanaged<ulong, byte, nuint, nint, int> MemsetD8Async;
    public static delegate* unmanaged<ulong, uint, nuint, nint, int> MemsetD32Async;
    public static delegate* unmanaged<int, byte**, int> GetErrorName;
    public static delegate* unmanaged<int, byte**, int> GetErrorString;

    private static readonly NativeLoad Load = new(LoadCore);

    /// <summary>Why loading or cuInit failed (null when loaded or not yet tried).</summary>
    public static string? LoadError { get; private set; }

    /// <summary>Candidate names of the driver library, in the order tried.</summary>
    public static string[] LibraryNames => OperatingSystem.IsWindows() ? ["nvcuda.dll"] : ["libcuda.so.1", "libcuda.so"];

    /// <summary>Loads the driver, resolves every entry point and runs cuInit once. Never throws: false means no CUDA.</summary>
    public static bool TryLoad() => Load.TryLoad();

    private static bool LoadCore()
    {
        nint lib = NativeLoad.First(LibraryNames, out _);

        if (lib == 0)
        {
            LoadError = $"no CUDA driver found (tried {string.Join(", ", LibraryNames)})";
            return false;
        }

        bool ok = true;
        nint Get(string symbol, string? fallback = null)
        {
            if (NativeLibrary.TryGetExport(lib, symbol, out nint address) ||
                (fallback is not null && NativeLibrary.TryGetExport(lib, fallback, out address)))
            {
                return address;
            }

            LoadError ??= $"the CUDA driver lacks {symbol}";
            ok = false;
            return 0;
        }

        // The error functions first, so a failing cuInit can be named.
        GetErrorName = (delegate* unmanaged<int, byte**, int>)Get("cuGetErrorName");
        GetErrorString = (delegate* unmanaged<int, byte**, int>)Get("cuGetErrorString");
        Init = (delegate* unmanaged<uint, int>)Get("cuInit");
        DriverGetVersion = (delegate* unmanaged<int*, int>)Get("cuDriverGetVersion");
        DeviceGetCount = (delegate* unmanaged<int*, int>)Get("cuDeviceGetCount");
        DeviceGet = (delegate* unmanaged<int*, int, int>)Get("cuDeviceGet");
        DeviceGetName = (delegate* unmanaged<byte*, int, int, int>)Get("cuDeviceGetName");
        DeviceGetAttribute = (delegate* unmanaged<int*, int, int, int>)Get("cuDeviceGetAttribute");
        DeviceTotalMem = (delegate* unmanaged<nuint*, int, int>)Get("cuDeviceTotalMem_v2");
        DevicePrimaryCtxRetain = (delegate* unmanaged<nint*, int, int>)Get("cuDevicePrimaryCtxRetain");
        // _v2 since CUDA 11; drivers before it export the same function unversioned.
        DevicePrimaryCtxRelease = (delegate* unmanaged<int, int>)Get("cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease");
        CtxPushCurrent = (delegate* unmanaged<nint, int>)Get("cuCtxPushCurrent_v2");
        CtxPopCurrent = (delegate* unmanaged<nint*, int>)Get("cuCtxPopCurrent_v2");
        CtxGetCurrent = (delegate* unmanaged<nint*, int>)Get("cuCtxGetCurrent");
        ModuleLoadData = (delegate* unmanaged<nint*, void*, int>)Get("cuModuleLoadData");
        ModuleUnload = (delegate* unmanaged<nint, int>)Get("cuModuleUnload");
        ModuleGetFunction = (delegate* unmanaged<nint*, nint, byte*, int>)Get("cuModuleGetFunction");
        LaunchKernel = (delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int>)Get("cuLaunchKernel");
        StreamCreate = (delegate* unmanaged<nint*, uint, int>)Get("cuStreamCreate");
        StreamDestroy = (delegate* unmanaged<nint, int>)Get("cuStreamDestroy_v2");
        StreamSynchronize = (delegate* unmanaged<nint, int>)Get("cuStreamSynchronize");
        MemAlloc = (delegate* unmanaged<ulong*, nuint, int>)Get("cuMemAlloc_v2");
        MemFree = (delegate* unmanaged<ulong, int>)Get("cuMemFree_v2");
        MemcpyHtoDAsync = (delegate* unmanaged<ulong, void*, nuint, nint, int>)Get("cuMemcpyHtoDAsync_v2");
        MemcpyDtoHAsync = (delegate* unmanaged<void*, ulong, nuint, nint, int>)Get("cuMemcpyDtoHAsync_v2");
        MemcpyDtoDAsync = (delegate* unmanaged<ulong, ulong, nuint, nint, int>)Get("cuMemcpyDtoDAsync_v2");
        MemsetD8Async = (delegate* unmanaged<ulong, byte, nuint, nint, int>)Get("cuMemsetD8Async");
        MemsetD32Async = (delegate* unmanaged<ulong, uint, nuint, nint, int>)Get("cuMemsetD32Async");
        if (!ok)
        {
            return false;
        }

        int code = Init(0);
        if (code != Success)
        {
            // CUDA_ERROR_NO_DEVICE, or a driver without a usable GPU (e.g. a container without one).
            LoadError = $"cuInit: {Describe(code)}";
            return false;
        }

        return true;
    }

    /// <summary>"NAME (code, description)" for a CUresult, as the driver spells it.</summary>
    public static string Describe(int code)
    {
        string name = "unknown CUDA error", text = "";
        byte* p = null;
        if (GetErrorName != null && GetErrorName(code, &p) == Success && p != null)
        {
            name = Marshal.PtrToStringUTF8((nint)p) ?? name;
        }

        p = null;
        if (GetErrorString != null && GetErrorString(code, &p) == Success && p != null)
        {
            text = Marshal.PtrToStringUTF8((nint)p) ?? "";
        }

        return text.Length == 0 ? $"{name} ({code})" : $"{name} ({code}, {text})";
    }

    /// <summary>Throws a <see cref="CudaException"/> naming the call and the error unless <paramref name="code"/> is CUDA_SUCCESS.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Check(int code, string function)
    {
        if (code != Success)
        {
            Throw(code, function, null);
        }
    }

    /// <summary>Throws unless <paramref name="code"/> is CUDA_SUCCESS, naming the call and what it was for.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Check(int code, string function, string context)
    {
        if (code != Success)
        {
            Throw(code, function, context);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Throw(int code, string function, string? context) =>
        throw new CudaException(function, code, Describe(code), context);

    // ---- device queries ----

    /// <summary>An integer attribute of a device.</summary>
    public static int Attribute(int device, int attribute)
    {
        int value = 0;
        Check(DeviceGetAttribute(&value, attribute, device), "cuDeviceGetAttribute");
        return value;
    }

    /// <summary>The device's name.</summary>
    public static string Name(int device)
    {
        byte* name = stackalloc byte[256];
        Check(DeviceGetName(name, 256, device), "cuDeviceGetName");
        return (Marshal.PtrToStringUTF8((nint)name) ?? "").Trim();
    }
}

/// <summary>
/// Makes a context current on this thread for a scope and restores the previous one: a no-op when
/// it is already current (the usual case, one thread driving the accelerator), else a push and a
/// pop, so a host application's own current context is left as it was.
/// </summary>
internal readonly unsafe ref struct CudaContextScope
{
    private readonly bool pushed;

    public CudaContextScope(nint context)
    {
        nint current = 0;
        CuNative.Check(CuNative.CtxGetCurrent(&current), "cuCtxGetCurrent");
        if (current != context)
        {
            CuNative.Check(CuNative.CtxPushCurrent(context), "cuCtxPushCurrent_v2");
            pushed = true;
        }
    }

    public void Dispose()
    {
        if (pushed)
        {
            nint popped;
            CuNative.CtxPopCurrent(&popped);
        }
    }
}

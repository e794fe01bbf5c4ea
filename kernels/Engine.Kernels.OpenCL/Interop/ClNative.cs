using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Engine.Kernels.Gpu;

[assembly: DisableRuntimeMarshalling]

namespace Engine.Kernels.OpenCL.Interop;

/// <summary>
/// A thin binding to the OpenCL ICD loader: one unmanaged function pointer per entry point,
/// resolved at run time with <see cref="NativeLibrary.TryLoad(string, out IntPtr)"/> and
/// <see cref="NativeLibrary.TryGetExport"/>. No DllImport and no resolver: loading is a boolean,
/// so a machine without OpenCL simply has no OpenCL devices. Every parameter is blittable
/// (handles are <see cref="nint"/>, sizes <see cref="nuint"/>); results are OpenCL error codes,
/// checked by <see cref="Check"/>.
/// </summary>
/// <remarks>
/// Handles: cl_platform_id, cl_device_id, cl_context, cl_command_queue, cl_program, cl_kernel,
/// cl_mem and cl_event are all <see cref="nint"/>. The API is thread-safe except that one
/// cl_kernel must not have its arguments set from two threads at once (each accelerator owns
/// its kernel objects).
/// </remarks>
internal static unsafe class ClNative
{
    // ---- constants (cl.h) ----
    public const int Success = 0;
    public const ulong DeviceTypeCpu = 1 << 1;
    public const ulong DeviceTypeGpu = 1 << 2;
    public const ulong DeviceTypeAccelerator = 1 << 3;
    public const ulong DeviceTypeAll = 0xFFFFFFFF;

    public const uint PlatformVersion = 0x0901;
    public const uint PlatformName = 0x0902;
    public const uint PlatformVendor = 0x0903;

    public const uint DeviceType = 0x1000;
    public const uint DeviceMaxComputeUnits = 0x1002;
    public const uint DeviceMaxWorkGroupSize = 0x1004;
    public const uint DeviceMaxMemAllocSize = 0x1010;
    public const uint DeviceGlobalMemSize = 0x101F;
    public const uint DeviceLocalMemSize = 0x1023;
    public const uint DeviceAvailable = 0x1027;
    public const uint DeviceCompilerAvailable = 0x1028;
    public const uint DeviceName = 0x102B;
    public const uint DeviceVendor = 0x102C;
    public const uint DriverVersion = 0x102D;
    public const uint DeviceVersion = 0x102F;
    public const uint DeviceExtensions = 0x1030;
    public const uint DeviceOpenClCVersion = 0x103D;

    public const nint ContextPlatform = 0x1084;
    public const ulong MemReadWrite = 1 << 0;

    public const uint ProgramBinarySizes = 0x1165;
    public const uint ProgramBinaries = 0x1166;
    public const uint ProgramBuildLog = 0x1183;
    public const uint KernelWorkGroupSize = 0x11B0;

    // ---- entry points (filled by Load) ----
    public static delegate* unmanaged<uint, nint*, uint*, int> GetPlatformIDs;
    public static delegate* unmanaged<nint, uint, nuint, void*, nuint*, int> GetPlatformInfo;
    public static delegate* unmanaged<nint, ulong, uint, nint*, uint*, int> GetDeviceIDs;
    public static delegate* unmanaged<nint, uint, nuint, void*, nuint*, int> GetDeviceInfo;
    public static delegate* unmanaged<nint*, uint, nint*, nint, nint, int*, nint> CreateContext;
    public static delegate* unmanaged<nint, int> ReleaseContext;
    public static delegate* unmanaged<nint, nint, ulong, int*, nint> CreateCommandQueue;
    public static delegate* unmanaged<nint, int> ReleaseCommandQueue;
    public static delegate* unmanaged<nint, int> Flush;
    public static delegate* unmanaged<nint, int> Finish;
    public static delegate* unmanaged<nint, uint, byte**, nuint*, int*, nint> CreateProgramWithSource;
    public static delegate* unmanaged<nint, uint, nint*, nuint*, byte**, int*, int*, nint> CreateProgramWithBinary;
    public static delegate* unmanaged<nint, uint, nint*, byte*, nint, nint, int> BuildProgram;
    public static delegate* unmanaged<nint, nint, uint, nuint, void*, nuint*, int> GetProgramBuildInfo;
    public static delegate* unmanaged<nint, uint, nuint, void*, nuint*, int> GetProgramInfo;
    public static delegate* unmanaged<nint, int> ReleaseProgram;
    public static delegate* unmanaged<nint, byte*, int*, nint> CreateKernel;
    public static delegate* unmanaged<nint, int> ReleaseKernel;
    public static delegate* unmanaged<nint, uint, nuint, void*, int> SetKernelArg;
    public static delegate* unmanaged<nint, nint, uint, nuint, void*, nuint*, int> GetKernelWorkGroupInfo;
    public static delegate* unmanaged<nint, ulong, nuint, void*, int*, nint> CreateBuffer;
    public static delegate* unmanaged<nint, int> ReleaseMemObject;
    public static delegate* unmanaged<nint, nint, uint, nuint, nuint, void*, uint, nint*, nint*, int> EnqueueWriteBuffer;
    public static delegate* unmanaged<nint, nint, uint, nuint, nuint, void*, uint, nint*, nint*, int> EnqueueReadBuffer;
    public static delegate* unmanaged<nint, nint, nint, nuint, nuint, nuint, uint, nint*, nint*, int> EnqueueCopyBuffer;
    public static delegate* unmanaged<nint, nint, void*, nuint, nuint, nuint, uint, nint*, nint*, int> EnqueueFillBuffer;
    public static delegate* unmanaged<nint, nint, uint, nuint*, nuint*, nuint*, uint, nint*, nint*, int> EnqueueNDRangeKernel;

    private static readonly NativeLoad Load = new(LoadCore);

    /// <summary>Why loading failed (null when loaded or not yet tried).</summary>
    public static string? LoadError { get; private set; }

    /// <summary>Candidate names of the ICD loader, in the order tried.</summary>
    public static string[] LibraryNames =>
        OperatingSystem.IsWindows() ? ["OpenCL.dll"]
        : OperatingSystem.IsMacOS() ? ["/System/Library/Frameworks/OpenCL.framework/OpenCL", "libOpenCL.dylib"]
        : ["libOpenCL.so.1", "libOpenCL.so"];

    /// <summary>Loads the ICD loader and resolves every entry point once. Never throws: false means no OpenCL.</summary>
    public static bool TryLoad() => Load.TryLoad();

    private static bool LoadCore()
    {
        nint lib = NativeLoad.First(LibraryNames, out _);

        if (lib == 0)
        {
            LoadError = $"no OpenCL ICD loader found (tried {string.Join(", ", LibraryNames)})";
            return false;
        }

        bool ok = true;
        nint Get(string symbol)
        {
            if (NativeLibrary.TryGetExport(lib, symbol, out nint address))
            {
                return address;
            }

            LoadError ??= $"the OpenCL loader lacks {symbol}";
            ok = false;
            return 0;
        }

        GetPlatformIDs = (delegate* unmanaged<uint, nint*, uint*, int>)Get("clGetPlatformIDs");
        GetPlatformInfo = (delegate* unmanaged<nint, uint, nuint, void*, nuint*, int>)Get("clGetPlatformInfo");
        GetDeviceIDs = (delegate* unmanaged<nint, ulong, uint, nint*, uint*, int>)Get("clGetDeviceIDs");
        GetDeviceInfo = (delegate* unmanaged<nint, uint, nuint, void*, nuint*, int>)Get("clGetDeviceInfo");
        CreateContext = (delegate* unmanaged<nint*, uint, nint*, nint, nint, int*, nint>)Get("clCreateContext");
        ReleaseContext = (delegate* unmanaged<nint, int>)Get("clReleaseContext");
        CreateCommandQueue = (delegate* unmanaged<nint, nint, ulong, int*, nint>)Get("clCreateCommandQueue");
        ReleaseCommandQueue = (delegate* unmanaged<nint, int>)Get("clReleaseCommandQueue");
        Flush = (delegate* unmanaged<nint, int>)Get("clFlush");
        Finish = (delegate* unmanaged<nint, int>)Get("clFinish");
        CreateProgramWithSource = (delegate* unmanaged<nint, uint, byte**, nuint*, int*, nint>)Get("clCreateProgramWithSource");
        CreateProgramWithBinary = (delegate* unmanaged<nint, uint, nint*, nuint*, byte**, int*, int*, nint>)Get("clCreateProgramWithBinary");
        BuildProgram = (delegate* unmanaged<nint, uint, nint*, byte*, nint, nint, int>)Get("clBuildProgram");
        GetProgramBuildInfo = (delegate* unmanaged<nint, nint, uint, nuint, void*, nuint*, int>)Get("clGetProgramBuildInfo");
        GetProgramInfo = (delegate* unmanaged<nint, uint, nuint, void*, nuint*, int>)Get("clGetProgramInfo");
        ReleaseProgram = (delegate* unmanaged<nint, int>)Get("clReleaseProgram");
        CreateKernel = (delegate* unmanaged<nint, byte*, int*, nint>)Get("clCreateKernel");
        ReleaseKernel = (delegate* unmanaged<nint, int>)Get("clReleaseKernel");
        SetKernelArg = (delegate* unmanaged<nint, uint, nuint, void*, int>)Get("clSetKernelArg");
        GetKernelWorkGroupInfo = (delegate* unmanaged<nint, nint, uint, nuint, void*, nuint*, int>)Get("clGetKernelWorkGroupInfo");
        CreateBuffer = (delegate* unmanaged<nint, ulong, nuint, void*, int*, nint>)Get("clCreateBuffer");
        ReleaseMemObject = (delegate* unmanaged<nint, int>)Get("clReleaseMemObject");
        EnqueueWriteBuffer = (delegate* unmanaged<nint, nint, uint, nuint, nuint, void*, uint, nint*, nint*, int>)Get("clEnqueueWriteBuffer");
        EnqueueReadBuffer = (delegate* unmanaged<nint, nint, uint, nuint, nuint, void*, uint, nint*, nint*, int>)Get("clEnqueueReadBuffer");
        EnqueueCopyBuffer = (delegate* unmanaged<nint, nint, nint, nuint, nuint, nuint, uint, nint*, nint*, int>)Get("clEnqueueCopyBuffer");
        EnqueueFillBuffer = (delegate* unmanaged<nint, nint, void*, nuint, nuint, nuint, uint, nint*, nint*, int>)Get("clEnqueueFillBuffer");
        EnqueueNDRangeKernel = (delegate* unmanaged<nint, nint, uint, nuint*, nuint*, nuint*, uint, nint*, nint*, int>)Get("clEnqueueNDRangeKernel");
        return ok;
    }

    /// <summary>Throws a <see cref="ClException"/> naming the call and the error unless <paramref name="code"/> is CL_SUCCESS.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Check(int code, string function)
    {
        if (code != Success)
        {
            throw new ClException(function, code);
        }
    }

    /// <summary>Throws unless <paramref name="code"/> is CL_SUCCESS, naming the call and what it was for.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Check(int code, string function, string context)
    {
        if (code != Success)
        {
            throw new ClException(function, code, context);
        }
    }

    // ---- info queries ----

    /// <summary>A string property of a platform.</summary>
    public static string PlatformString(nint platform, uint param)
    {
        nuint size = 0;
        Check(GetPlatformInfo(platform, param, 0, null, &size), "clGetPlatformInfo");
        byte[] bytes = new byte[(int)size];
        fixed (byte* p = bytes)
        {
            Check(GetPlatformInfo(platform, param, size, p, null), "clGetPlatformInfo");
        }

        return DecodeString(bytes);
    }

    /// <summary>A string property of a device.</summary>
    public static string DeviceString(nint device, uint param)
    {
        nuint size = 0;
        Check(GetDeviceInfo(device, param, 0, null, &size), "clGetDeviceInfo");
        byte[] bytes = new byte[(int)size];
        fixed (byte* p = bytes)
        {
            Check(GetDeviceInfo(device, param, size, p, null), "clGetDeviceInfo");
        }

        return DecodeString(bytes);
    }

    /// <summary>A scalar property of a device (cl_uint, cl_ulong, size_t, cl_bool ...).</summary>
    public static T DeviceValue<T>(nint device, uint param)
        where T : unmanaged
    {
        T value = default;
        Check(GetDeviceInfo(device, param, (nuint)sizeof(T), &value, null), "clGetDeviceInfo");
        return value;
    }

    private static string DecodeString(byte[] bytes)
    {
        int length = Array.IndexOf(bytes, (byte)0);
        return System.Text.Encoding.UTF8.GetString(bytes, 0, length < 0 ? bytes.Length : length).Trim();
    }
}

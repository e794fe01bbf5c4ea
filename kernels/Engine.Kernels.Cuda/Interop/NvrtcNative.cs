using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Engine.Kernels.Gpu;

namespace Engine.Kernels.Cuda.Interop;

/// <summary>
/// A thin binding to NVRTC, the CUDA run-time compiler: function pointers resolved at run time
/// from the newest library found (<c>libnvrtc.so.13</c>, <c>.12</c>, <c>.11.2</c>; on Windows
/// <c>nvrtc64_130_0.dll</c>, <c>nvrtc64_120_0.dll</c>, <c>nvrtc64_112_0.dll</c>; see
/// <see cref="Candidates"/>). Independent of the driver: kernels compile on machines without a
/// GPU (CI compiles every kernel this way).
/// </summary>
internal static unsafe class NvrtcNative
{
    public const int Success = 0;

    // ---- entry points (filled by Load) ----
    public static delegate* unmanaged<int, byte*> GetErrorString;
    public static delegate* unmanaged<int*, int*, int> Version;
    public static delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int> CreateProgram;
    public static delegate* unmanaged<nint*, int> DestroyProgram;
    public static delegate* unmanaged<nint, int, byte**, int> CompileProgram;
    public static delegate* unmanaged<nint, nuint*, int> GetProgramLogSize;
    public static delegate* unmanaged<nint, byte*, int> GetProgramLog;
    public static delegate* unmanaged<nint, nuint*, int> GetPtxSize;
    public static delegate* unmanaged<nint, byte*, int> GetPtx;
    public static delegate* unmanaged<nint, nuint*, int> GetCubinSize;
    public static delegate* unmanaged<nint, byte*, int> GetCubin;

    /// <summary>nvrtcGetNumSupportedArchs (NVRTC 11.2 and later; null before).</summary>
    public static delegate* unmanaged<int*, int> GetNumSupportedArchs;

    /// <summary>nvrtcGetSupportedArchs (NVRTC 11.2 and later; null before).</summary>
    public static delegate* unmanaged<int*, int> GetSupportedArchs;

    private static readonly NativeLoad Load = new(LoadCore);

    /// <summary>Why loading failed (null when loaded or not yet tried).</summary>
    public static string? LoadError { get; private set; }

    /// <summary>The file name of the library loaded (null until loaded).</summary>
    public static string? LibraryName { get; private set; }

    /// <summary>Candidate names of the NVRTC library, newest first.</summary>
    public static string[] LibraryNames => OperatingSystem.IsWindows()
        ? ["nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll"]
        : ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"];

    /// <summary>Loads NVRTC once. Never throws: false means no run-time compiler.</summary>
    public static bool TryLoad() => Load.TryLoad();

    /// <summary>The environment variable that names the NVRTC library file to load before any other.</summary>
    public const string PathVariable = "ENGINE_NVRTC";

    /// <summary>
    /// Where NVRTC is looked for, in order: <c>$ENGINE_NVRTC</c>, then each name on the loader's
    /// search path, then in the CUDA toolkit (<c>$CUDA_PATH</c>, <c>$CUDA_HOME</c>,
    /// <c>/usr/local/cuda</c>), whose library folder is often not on that path.
    /// </summary>
    public static IEnumerable<string> Candidates()
    {
        string? configured = Environment.GetEnvironmentVariable(PathVariable);
        if (!string.IsNullOrWhiteSpace(configured))
        {
            yield return configured.Trim();
        }

        foreach (string name in LibraryNames)
        {
            yield return name;
        }

        string[] roots = [Environment.GetEnvironmentVariable("CUDA_PATH") ?? "", Environment.GetEnvironmentVariable("CUDA_HOME") ?? "",
            OperatingSystem.IsWindows() ? "" : "/usr/local/cuda"];
        foreach (string root in roots.Where(r => r.Length > 0).Distinct(StringComparer.Ordinal))
        {
            foreach (string name in LibraryNames)
            {
                yield return Path.Combine(root, OperatingSystem.IsWindows() ? "bin" : "lib64", name);
            }
        }
    }

    private static bool LoadCore()
    {
        nint lib = NativeLoad.First(Candidates(), out string? loaded);
        LibraryName = loaded;

        if (lib == 0)
        {
            LoadError = $"no NVRTC library found (tried {string.Join(", ", LibraryNames)} and the CUDA toolkit; set {PathVariable} to its path)";
            return false;
        }

        bool ok = true;
        nint Get(string symbol, bool required = true)
        {
            if (NativeLibrary.TryGetExport(lib, symbol, out nint address))
            {
                return address;
            }

            if (required)
            {
                LoadError ??= $"{LibraryName} lacks {symbol}";
                ok = false;
            }

            return 0;
        }

        GetErrorString = (delegate* unmanaged<int, byte*>)Get("nvrtcGetErrorString");
        Version = (delegate* unmanaged<int*, int*, int>)Get("nvrtcVersion");
        CreateProgram = (delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int>)Get("nvrtcCreateProgram");
        DestroyProgram = (delegate* unmanaged<nint*, int>)Get("nvrtcDestroyProgram");
        CompileProgram = (delegate* unmanaged<nint, int, byte**, int>)Get("nvrtcCompileProgram");
        GetProgramLogSize = (delegate* unmanaged<nint, nuint*, int>)Get("nvrtcGetProgramLogSize");
        GetProgramLog = (delegate* unmanaged<nint, byte*, int>)Get("nvrtcGetProgramLog");
        GetPtxSize = (delegate* unmanaged<nint, nuint*, int>)Get("nvrtcGetPTXSize");
        GetPtx = (delegate* unmanaged<nint, byte*, int>)Get("nvrtcGetPTX");
        GetCubinSize = (delegate* unmanaged<nint, nuint*, int>)Get("nvrtcGetCUBINSize");
        GetCubin = (delegate* unmanaged<nint, byte*, int>)Get("nvrtcGetCUBIN");
        GetNumSupportedArchs = (delegate* unmanaged<int*, int>)Get("nvrtcGetNumSupportedArchs", required: false);
        GetSupportedArchs = (delegate* unmanaged<int*, int>)Get("nvrtcGetSupportedArchs", required: false);
        return ok;
    }

    /// <summary>"NVRTC_ERROR_... (code)" for an nvrtcResult.</summary>
    public static string Describe(int code)
    {
        byte* p = GetErrorString != null ? GetErrorString(code) : null;
        string name = p == null ? "unknown NVRTC error" : Marshal.PtrToStringUTF8((nint)p) ?? "unknown NVRTC error";
        return $"{name} ({code})";
    }

    /// <summary>Throws a <see cref="CudaException"/> naming the call and the error unless <paramref name="code"/> is NVRTC_SUCCESS.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Check(int code, string function, string? context = null)
    {
        if (code != Success)
        {
            throw new CudaException(function, code, Describe(code), context);
        }
    }

    /// <summary>The NVRTC version as (major, minor).</summary>
    public static (int Major, int Minor) GetVersion()
    {
        int major = 0, minor = 0;
        Check(Version(&major, &minor), "nvrtcVersion");
        return (major, minor);
    }

    /// <summary>The SM architectures this NVRTC compiles for (e.g. 80 for sm_80), ascending; empty when it cannot say.</summary>
    public static int[] SupportedArchs()
    {
        if (GetNumSupportedArchs == null || GetSupportedArchs == null)
        {
            return [];
        }

        int count = 0;
        if (GetNumSupportedArchs(&count) != Success || count <= 0)
        {
            return [];
        }

        int[] archs = new int[count];
        fixed (int* p = archs)
        {
            if (GetSupportedArchs(p) != Success)
            {
                return [];
            }
        }

        Array.Sort(archs);
        return archs;
    }
}

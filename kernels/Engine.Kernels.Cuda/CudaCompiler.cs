using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Engine.Core;
using Engine.Kernels.Cuda.Interop;
using Engine.Kernels.Gpu;

namespace Engine.Kernels.Cuda;

/// <summary>A compiled module image: CUBIN for one SM architecture, or PTX the driver compiles on load.</summary>
/// <param name="Data">The image (PTX ends with its terminating NUL, as cuModuleLoadData wants it).</param>
/// <param name="IsCubin">True for CUBIN, false for PTX.</param>
/// <param name="Target">The architecture option it was compiled with.</param>
internal sealed record CudaImage(byte[] Data, bool IsCubin, string Target);

/// <summary>
/// NVRTC compilation of the embedded kernels. Needs no driver and no GPU, so tests compile every
/// kernel on any machine with NVRTC. A failed compilation throws with NVRTC's log in the message.
/// </summary>
internal static unsafe class CudaCompiler
{
    /// <summary>True when an NVRTC library is loaded.</summary>
    public static bool IsAvailable => NvrtcNative.TryLoad();

    /// <summary>Why NVRTC is unavailable (null when it is available).</summary>
    public static string? UnavailableReason => IsAvailable ? null : NvrtcNative.LoadError;

    /// <summary>"major.minor" of the loaded NVRTC.</summary>
    public static string Version
    {
        get
        {
            (int major, int minor) = NvrtcNative.GetVersion();
            return string.Create(CultureInfo.InvariantCulture, $"{major}.{minor}");
        }
    }

    /// <summary>
    /// The architecture option for a device of compute capability <paramref name="major"/>.<paramref name="minor"/>:
    /// <c>--gpu-architecture=sm_XY</c> (CUBIN) when this NVRTC knows the architecture, else
    /// <c>compute_XY</c> PTX for the newest architecture it knows below the device's, which the
    /// driver compiles for the device on load (an NVRTC older than the GPU).
    /// </summary>
    public static (string Option, bool Cubin) Target(int major, int minor)
    {
        int arch = (major * 10) + minor;
        int[] known = NvrtcNative.SupportedArchs();
        if (known.Length == 0 || Array.IndexOf(known, arch) >= 0)
        {
            return (string.Create(CultureInfo.InvariantCulture, $"--gpu-architecture=sm_{arch}"), true);
        }

        int[] older = known.Where(a => a < arch).ToArray();
        int best = older.Length > 0 ? older[^1] : known[0];
        return (string.Create(CultureInfo.InvariantCulture, $"--gpu-architecture=compute_{best}"), false);
    }

    /// <summary>
    /// Compiles <paramref name="source"/> with <paramref name="options"/> (space-separated, e.g.
    /// <c>-DWG=256</c>) for <paramref name="target"/> (an architecture option from <see cref="Target"/>).
    /// </summary>
    /// <param name="name">A name for messages and the compiler's diagnostics (the op-family file).</param>
    /// <param name="source">CUDA C++ source.</param>
    /// <param name="options">Compiler options besides the architecture.</param>
    /// <param name="target">The architecture option.</param>
    /// <param name="cubin">True to return CUBIN (target sm_XY), false for PTX (target compute_XY).</param>
    public static CudaImage Compile(string name, string source, string options, string target, bool cubin)
    {
        if (!NvrtcNative.TryLoad())
        {
            throw new CudaException($"cannot compile {name}: {NvrtcNative.LoadError}");
        }

        string[] all = [target, .. options.Split(' ', StringSplitOptions.RemoveEmptyEntries)];
        byte[] text = Encoding.UTF8.GetBytes(source + "\0");
        byte[] fileName = Encoding.UTF8.GetBytes(name + "\0");
        nint program = 0;
        fixed (byte* s = text)
        fixed (byte* n = fileName)
        {
            NvrtcNative.Check(NvrtcNative.CreateProgram(&program, s, n, 0, null, null), "nvrtcCreateProgram", name);
        }

        var strings = new nint[all.Length];
        try
        {
            for (int i = 0; i < all.Length; i++)
            {
                strings[i] = Marshal.StringToCoTaskMemUTF8(all[i]);
            }

            int code;
            fixed (nint* o = strings)
            {
                code = NvrtcNative.CompileProgram(program, all.Length, (byte**)o);
            }

            if (code != NvrtcNative.Success)
            {
                throw new CudaException("nvrtcCompileProgram", code, NvrtcNative.Describe(code),
                    $"compiling {name} with '{string.Join(' ', all)}' (NVRTC {Version}):{Environment.NewLine}{Log(program)}");
            }

            return new CudaImage(Output(program, name, cubin), cubin, target);
        }
        finally
        {
            foreach (nint p in strings)
            {
                Marshal.FreeCoTaskMem(p);
            }

            NvrtcNative.DestroyProgram(&program);
        }
    }

    /// <summary>The compiled image (CUBIN or PTX) through NVRTC's size and copy calls of that kind.</summary>
    private static byte[] Output(nint program, string name, bool cubin)
    {
        var getSize = cubin ? NvrtcNative.GetCubinSize : NvrtcNative.GetPtxSize;
        var get = cubin ? NvrtcNative.GetCubin : NvrtcNative.GetPtx;
        string kind = cubin ? "CUBIN" : "PTX";
        nuint size = 0;
        NvrtcNative.Check(getSize(program, &size), $"nvrtcGet{kind}Size", name);
        byte[] data = new byte[checked((int)size)];
        fixed (byte* d = data)
        {
            NvrtcNative.Check(get(program, d), $"nvrtcGet{kind}", name);
        }

        return data;
    }

    /// <summary>The compiler's log (empty when it cannot be read).</summary>
    private static string Log(nint program)
    {
        nuint size = 0;
        if (NvrtcNative.GetProgramLogSize(program, &size) != NvrtcNative.Success || size <= 1)
        {
            return "(no compiler log)";
        }

        byte[] bytes = new byte[(int)size];
        fixed (byte* b = bytes)
        {
            if (NvrtcNative.GetProgramLog(program, b) != NvrtcNative.Success)
            {
                return "(no compiler log)";
            }
        }

        return Encoding.UTF8.GetString(bytes).TrimEnd('\0', '\n', ' ');
    }
}

/// <summary>
/// On-disk cache of compiled module images, one file per key (<c>&lt;key&gt;.cubin</c> or
/// <c>&lt;key&gt;.ptx</c>) under <c>$ENGINE_CUDA_CACHE</c>, else the user's cache directory's
/// <c>engine/cuda</c> (<c>ENGINE_CUDA_CACHE=off</c> disables it; see <see cref="KernelBinaryCache"/>).
/// An image the driver rejects is recompiled.
/// </summary>
internal static class CudaBinaryCache
{
    private static readonly KernelBinaryCache Cache = new("ENGINE_CUDA_CACHE", "cuda");

    /// <summary>The cache directory, or null when disabled.</summary>
    public static string? Directory => Cache.Directory;

    /// <summary>The cached image for a key (CUBIN first, then PTX), or null.</summary>
    public static CudaImage? TryRead(string key, string target)
    {
        foreach (bool cubin in (ReadOnlySpan<bool>)[true, false])
        {
            if (Cache.TryRead(key, Ending(cubin)) is { } data)
            {
                return new CudaImage(data, cubin, target);
            }
        }

        return null;
    }

    public static void Write(string key, CudaImage image) => Cache.Write(key, Ending(image.IsCubin), image.Data);

    private static string Ending(bool cubin) => cubin ? ".cubin" : ".ptx";
}

/// <summary>The CUDA kernel sources: each op family's shared source behind Prelude.cu (see <see cref="KernelSources"/>).</summary>
internal static class CudaSources
{
    private static readonly KernelSources Embedded = new(typeof(CudaSources).Assembly, ".cu", "CUDA");

    /// <summary>The op-family files, e.g. "Gemm.cu".</summary>
    public static IReadOnlyList<string> Files => Embedded.Files;

    /// <summary>The text NVRTC compiles for <paramref name="file"/>, with #line markers so compiler logs name the right file and line.</summary>
    public static string For(string file) => Embedded.For(file);
}

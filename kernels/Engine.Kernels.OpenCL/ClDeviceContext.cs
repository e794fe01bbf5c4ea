using System.Text;
using Engine.Core;
using Engine.Kernels.Gpu;
using Engine.Kernels.OpenCL.Interop;

namespace Engine.Kernels.OpenCL;

/// <summary>
/// The process-wide OpenCL context of one device and its compiled programs. Every accelerator on
/// the device shares it (each has its own queue and kernel objects), so a program is compiled once
/// per process: programs are cached by a key over (source, build options, device, device version,
/// driver version, platform). Built programs' binaries also go to an on-disk cache under the
/// user's cache directory with the same key (see <see cref="ClBinaryCache"/>), so later processes
/// skip the compiler. Thread-safe.
/// </summary>
internal sealed unsafe class ClDeviceContext : IDisposable
{
    private readonly Dictionary<string, nint> programs = new(StringComparer.Ordinal);
    private readonly Lock gate = new();
    private nint handle;

    public ClDeviceContext(ClDeviceHandle device)
    {
        Device = device;
        nint platform = device.Platform;
        nint id = device.Device;
        nint* properties = stackalloc nint[3] { ClNative.ContextPlatform, platform, 0 };
        int code;
        handle = ClNative.CreateContext(properties, 1, &id, 0, 0, &code);
        ClNative.Check(code, "clCreateContext", device.Name);
        MaxAllocBytes = (long)Math.Min(ClNative.DeviceValue<ulong>(id, ClNative.DeviceMaxMemAllocSize), long.MaxValue);
        MaxWorkGroupSize = (long)ClNative.DeviceValue<nuint>(id, ClNative.DeviceMaxWorkGroupSize);
        LocalMemoryBytes = (long)Math.Min(ClNative.DeviceValue<ulong>(id, ClNative.DeviceLocalMemSize), long.MaxValue);
    }

    /// <summary>The device.</summary>
    public ClDeviceHandle Device { get; }

    /// <summary>The cl_context.</summary>
    public nint Handle => handle;

    /// <summary>Largest single buffer the device allows, in bytes.</summary>
    public long MaxAllocBytes { get; }

    /// <summary>Largest work-group the device allows.</summary>
    public long MaxWorkGroupSize { get; }

    /// <summary>Local memory per work-group, in bytes.</summary>
    public long LocalMemoryBytes { get; }

    /// <summary>Programs built from source in this process (for tests of the cache).</summary>
    public int SourceBuilds { get; private set; }

    /// <summary>Programs loaded from the on-disk binary cache in this process.</summary>
    public int BinaryLoads { get; private set; }

    /// <summary>
    /// The program built from <paramref name="source"/> with <paramref name="options"/>: from the
    /// in-memory cache, else from the on-disk binary cache, else compiled (and stored in both).
    /// A compile error throws with the build log in the message.
    /// </summary>
    /// <param name="name">A name for messages (the op-family file).</param>
    /// <param name="source">OpenCL C source.</param>
    /// <param name="options">Build options.</param>
    public nint Program(string name, string source, string options)
    {
        string key = Key(source, options);
        lock (gate)
        {
            if (programs.TryGetValue(key, out nint cached))
            {
                return cached;
            }

            nint program = 0;
            if (ClBinaryCache.TryRead(key) is { } binary)
            {
                program = TryBuildFromBinary(binary, options);
                if (program != 0)
                {
                    BinaryLoads++;
                }
            }

            if (program == 0)
            {
                program = BuildFromSource(name, source, options);
                SourceBuilds++;
                if (ReadBinary(program) is { } built)
                {
                    ClBinaryCache.Write(key, built);
                }
            }

            programs[key] = program;
            return program;
        }
    }

    /// <summary>The cache key: a SHA-256 over everything that determines the compiled code.</summary>
    public string Key(string source, string options) =>
        KernelBinaryCache.Key(source, options, Device.Name, Device.Version, Device.Driver, Device.PlatformName);

    private nint BuildFromSource(string name, string source, string options)
    {
        byte[] text = Encoding.UTF8.GetBytes(source);
        int code;
        nint program;
        fixed (byte* p = text)
        {
            byte* strings = p;
            nuint length = (nuint)text.Length;
            program = ClNative.CreateProgramWithSource(handle, 1, &strings, &length, &code);
        }

        ClNative.Check(code, "clCreateProgramWithSource", name);
        code = Build(program, options);
        if (code != ClNative.Success)
        {
            string log = BuildLog(program);
            ClNative.ReleaseProgram(program);
            throw new ClException("clBuildProgram", code, $"compiling {name} for {Device.Name} with '{options}':{Environment.NewLine}{log}");
        }

        return program;
    }

    /// <summary>A program from a binary the driver accepts, built; 0 when it refuses (the caller builds from source).</summary>
    internal nint TryBuildFromBinary(byte[] binary, string options)
    {
        nint id = Device.Device;
        int status = 0, code;
        nint program;
        fixed (byte* p = binary)
        {
            byte* pointer = p;
            nuint length = (nuint)binary.Length;
            program = ClNative.CreateProgramWithBinary(handle, 1, &id, &length, &pointer, &status, &code);
        }

        if (code != ClNative.Success || status != ClNative.Success)
        {
            if (program != 0)
            {
                ClNative.ReleaseProgram(program);
            }

            return 0;
        }

        if (Build(program, options) != ClNative.Success)
        {
            ClNative.ReleaseProgram(program);
            return 0;
        }

        return program;
    }

    private int Build(nint program, string options)
    {
        nint id = Device.Device;
        byte[] opts = Encoding.UTF8.GetBytes(options + "\0");
        fixed (byte* o = opts)
        {
            return ClNative.BuildProgram(program, 1, &id, o, 0, 0);
        }
    }

    /// <summary>The build log of a program for this device (empty when it cannot be read).</summary>
    private string BuildLog(nint program)
    {
        nuint size = 0;
        if (ClNative.GetProgramBuildInfo(program, Device.Device, ClNative.ProgramBuildLog, 0, null, &size) != ClNative.Success || size == 0)
        {
            return "(no build log)";
        }

        byte[] bytes = new byte[(int)size];
        fixed (byte* b = bytes)
        {
            if (ClNative.GetProgramBuildInfo(program, Device.Device, ClNative.ProgramBuildLog, size, b, null) != ClNative.Success)
            {
                return "(no build log)";
            }
        }

        return Encoding.UTF8.GetString(bytes).TrimEnd('\0', '\n', ' ');
    }

    /// <summary>The program's binary for this device, or null when the driver gives none.</summary>
    private static byte[]? ReadBinary(nint program)
    {
        nuint size = 0;
        if (ClNative.GetProgramInfo(program, ClNative.ProgramBinarySizes, (nuint)sizeof(nuint), &size, null) != ClNative.Success ||
            size == 0 || size > int.MaxValue)
        {
            return null;
        }

        byte[] binary = new byte[(int)size];
        fixed (byte* b = binary)
        {
            byte* pointer = b;
            if (ClNative.GetProgramInfo(program, ClNative.ProgramBinaries, (nuint)sizeof(byte*), &pointer, null) != ClNative.Success)
            {
                return null;
            }
        }

        return binary;
    }

    public void Dispose()
    {
        lock (gate)
        {
            foreach (nint program in programs.Values)
            {
                ClNative.ReleaseProgram(program);
            }

            programs.Clear();
            if (handle != 0)
            {
                ClNative.ReleaseContext(handle);
                handle = 0;
            }
        }
    }
}

/// <summary>
/// On-disk cache of program binaries, one file per key (<c>&lt;key&gt;.bin</c>) under
/// <c>$ENGINE_OPENCL_CACHE</c>, else the user's cache directory's <c>engine/opencl</c>
/// (<c>ENGINE_OPENCL_CACHE=off</c> disables it; see <see cref="KernelBinaryCache"/>). A binary the
/// driver rejects is rebuilt from source.
/// </summary>
internal static class ClBinaryCache
{
    private static readonly KernelBinaryCache Cache = new("ENGINE_OPENCL_CACHE", "opencl");

    /// <summary>The cache directory, or null when disabled.</summary>
    public static string? Directory => Cache.Directory;

    public static byte[]? TryRead(string key) => Cache.TryRead(key, ".bin");

    public static void Write(string key, byte[] binary) => Cache.Write(key, ".bin", binary);
}

/// <summary>The OpenCL C sources: each op family's shared source behind Prelude.cl (see <see cref="KernelSources"/>).</summary>
internal static class ClSources
{
    private static readonly KernelSources Embedded = new(typeof(ClSources).Assembly, ".cl", "OpenCL");

    /// <summary>The text built for <paramref name="file"/> (e.g. "Gemm.cl"), with #line markers so build logs name the right file and line.</summary>
    public static string For(string file) => Embedded.For(file);
}

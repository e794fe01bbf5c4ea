using System.Runtime.InteropServices;

namespace Engine.Kernels.Gpu;

/// <summary>
/// The one-time load of a native library binding (the OpenCL ICD loader, the CUDA driver, NVRTC):
/// tried on first need, once per process (thread-safe), its outcome kept.
/// </summary>
/// <param name="load">Loads the library and resolves its entry points; false means unavailable. Never throws.</param>
internal sealed class NativeLoad(Func<bool> load)
{
    private readonly Lock gate = new();
    private int state; // 0 not tried, 1 loaded, -1 unavailable

    /// <summary>True once the library is loaded; false when it is not there.</summary>
    public bool TryLoad()
    {
        if (state != 0)
        {
            return state > 0;
        }

        lock (gate)
        {
            if (state == 0)
            {
                state = load() ? 1 : -1;
            }
        }

        return state > 0;
    }

    /// <summary>The first of <paramref name="candidates"/> that loads (its handle and name), or 0 and null.</summary>
    public static nint First(IEnumerable<string> candidates, out string? loaded)
    {
        foreach (string candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate, out nint lib))
            {
                loaded = candidate;
                return lib;
            }
        }

        loaded = null;
        return 0;
    }
}

using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Engine.Kernels.Gpu;

/// <summary>
/// A backend's on-disk cache of compiled kernels, one file per key and kind (<c>&lt;key&gt;&lt;ending&gt;</c>)
/// under the directory named by <see cref="EnvironmentVariable"/>, else <c>$XDG_CACHE_HOME/engine/&lt;folder&gt;</c>,
/// else <c>~/.cache/engine/&lt;folder&gt;</c> (LocalApplicationData on Windows); the variable set to
/// <c>off</c> disables it. Files are written atomically (temporary file, then rename); any IO
/// error just means no cache, and the caller rebuilds what the driver rejects.
/// </summary>
/// <param name="environmentVariable">The environment variable naming the cache directory (or "off").</param>
/// <param name="folder">The folder under the user's cache directory.</param>
internal sealed class KernelBinaryCache(string environmentVariable, string folder)
{
    /// <summary>The environment variable naming the cache directory (or "off").</summary>
    public string EnvironmentVariable { get; } = environmentVariable;

    /// <summary>The cache directory, or null when disabled.</summary>
    public string? Directory
    {
        get
        {
            string? configured = Environment.GetEnvironmentVariable(EnvironmentVariable);
            if (!string.IsNullOrWhiteSpace(configured))
            {
                return configured.Trim().Equals("off", StringComparison.OrdinalIgnoreCase) ? null : configured.Trim();
            }

            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            string root = !string.IsNullOrWhiteSpace(xdg) ? xdg
                : OperatingSystem.IsWindows() ? Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData)
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return string.IsNullOrEmpty(root) ? null : Path.Combine(root, "engine", folder);
        }
    }

    /// <summary>A cache key: a SHA-256 over everything that determines the compiled code.</summary>
    public static string Key(params ReadOnlySpan<string> parts) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\0', parts))));

    /// <summary>The cached file of <paramref name="key"/> and <paramref name="ending"/>, or null.</summary>
    public byte[]? TryRead(string key, string ending)
    {
        try
        {
            string? dir = Directory;
            string path = dir is null ? "" : Path.Combine(dir, key + ending);
            return dir is not null && File.Exists(path) ? File.ReadAllBytes(path) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Stores <paramref name="data"/> as the file of <paramref name="key"/> and <paramref name="ending"/>.</summary>
    public void Write(string key, string ending, byte[] data)
    {
        try
        {
            string? dir = Directory;
            if (dir is null)
            {
                return;
            }

            System.IO.Directory.CreateDirectory(dir);
            string path = Path.Combine(dir, key + ending);
            string temp = path + "." + Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + ".tmp";
            File.WriteAllBytes(temp, data);
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The cache is an optimisation only.
        }
    }
}

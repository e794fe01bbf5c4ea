using System.Reflection;
using System.Text;
using Engine.Core;

namespace Engine.Kernels.Gpu;

/// <summary>
/// A backend's embedded kernel sources: one file per op family (resource names are the file names),
/// each compiled with the backend's Common file prepended. Thread-safe.
/// </summary>
/// <param name="assembly">The backend assembly that embeds the files.</param>
/// <param name="extension">Their ending (".cl", ".cu").</param>
/// <param name="language">The language, for messages.</param>
internal sealed class KernelSources(Assembly assembly, string extension, string language)
{
    private readonly Dictionary<string, string> cache = new(StringComparer.Ordinal);
    private readonly Lock gate = new();
    private readonly string common = "Common" + extension;

    /// <summary>The op-family files (every embedded file of the ending but Common), e.g. "Gemm.cu".</summary>
    public IReadOnlyList<string> Files =>
        assembly.GetManifestResourceNames()
            .Where(n => n.EndsWith(extension, StringComparison.Ordinal) && n != common)
            .Order(StringComparer.Ordinal)
            .ToList();

    /// <summary>Common followed by <paramref name="file"/>, with #line markers so compiler logs name the right file and line.</summary>
    public string For(string file)
    {
        lock (gate)
        {
            if (!cache.TryGetValue(file, out string? text))
            {
                text = $"#line 1 \"{common}\"\n{Read(common)}\n#line 1 \"{file}\"\n{Read(file)}";
                cache[file] = text;
            }

            return text;
        }
    }

    /// <summary>One embedded source file.</summary>
    public string Read(string file)
    {
        using Stream stream = assembly.GetManifestResourceStream(file)
            ?? throw new EngineException($"the {language} source {file} is not embedded in {assembly.GetName().Name}");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }
}

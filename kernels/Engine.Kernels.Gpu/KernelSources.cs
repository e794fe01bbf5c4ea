using System.Reflection;
using System.Text;
using Engine.Core;

namespace Engine.Kernels.Gpu;

/// <summary>
/// A backend's kernel sources. Every kernel is written once, in the portable dialect of the .h
/// files embedded in this assembly (one per op family, plus Common.h); a backend compiles an op
/// family as its prelude (which spells the dialect's macros in its language), Common.h, the
/// family's .h, and the backend's own part of the family, if it embeds one (e.g. Gemm.cl).
/// Files are named for the backend ("Gemm.cu"), as the host loads them. Thread-safe.
/// </summary>
/// <param name="assembly">The backend assembly that embeds its prelude and backend-only parts.</param>
/// <param name="extension">Its ending (".cl", ".cu").</param>
/// <param name="language">The language, for messages.</param>
internal sealed class KernelSources(Assembly assembly, string extension, string language)
{
    private const string Shared = ".h";
    private const string Common = "Common" + Shared;
    private static readonly Assembly SharedAssembly = typeof(KernelSources).Assembly;

    private readonly Dictionary<string, string> cache = new(StringComparer.Ordinal);
    private readonly Lock gate = new();
    private readonly string prelude = "Prelude" + extension;

    /// <summary>The op-family files in the backend's ending (one per shared .h but Common.h), e.g. "Gemm.cu".</summary>
    public IReadOnlyList<string> Files =>
        SharedAssembly.GetManifestResourceNames()
            .Where(n => n.EndsWith(Shared, StringComparison.Ordinal) && n != Common)
            .Select(n => Path.GetFileNameWithoutExtension(n) + extension)
            .Order(StringComparer.Ordinal)
            .ToList();

    /// <summary>
    /// The text compiled for <paramref name="file"/>: prelude, Common.h, the family's .h and the
    /// backend's part, with #line markers so compiler logs name the right file and line.
    /// </summary>
    public string For(string file)
    {
        lock (gate)
        {
            if (!cache.TryGetValue(file, out string? text))
            {
                string family = Path.GetFileNameWithoutExtension(file) + Shared;
                var sb = new StringBuilder();
                Append(sb, prelude, Read(assembly, prelude));
                Append(sb, Common, Read(SharedAssembly, Common));
                Append(sb, family, Read(SharedAssembly, family));
                if (assembly.GetManifestResourceInfo(file) is not null)
                {
                    Append(sb, file, Read(assembly, file));
                }

                text = sb.ToString();
                cache[file] = text;
            }

            return text;
        }
    }

    private static void Append(StringBuilder sb, string name, string text) =>
        sb.Append("#line 1 \"").Append(name).Append("\"\n").Append(text).Append('\n');

    private string Read(Assembly from, string file)
    {
        using Stream stream = from.GetManifestResourceStream(file)
            ?? throw new EngineException($"the {language} kernel source {file} is not embedded in {from.GetName().Name}");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }
}

using System.Text;
using Engine.Core;

namespace Engine.IO;

/// <summary>
/// Replaces files atomically: the content goes to a temporary file in the target's directory
/// (so the final rename never crosses a file system), is flushed to disk, and only then is renamed
/// over the target. A reader sees either the old file or the complete new one, never a torn file.
/// If anything fails before the rename, the temporary file is deleted and the target is untouched.
/// </summary>
/// <remarks>
/// Exceptions thrown by the caller's write callback propagate unchanged (after cleanup), except
/// <see cref="IOException"/> and <see cref="UnauthorizedAccessException"/>, which are wrapped in an
/// <see cref="EngineException"/> naming the target file. The directory itself is not fsync'ed
/// (.NET has no portable API for it), so after a power loss the rename may be lost, but the target
/// then still holds the old content.
/// </remarks>
internal static class AtomicFile
{
    private const int BufferSize = 1 << 20;

    /// <summary>Atomically replaces (or creates) <paramref name="path"/> with what <paramref name="write"/> writes.</summary>
    /// <param name="path">The target file; its directory must exist.</param>
    /// <param name="write">Writes the whole content to the stream (a buffered file stream; do not dispose it).</param>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        WriteAll([(path, write)]);
    }

    /// <summary>Atomically replaces (or creates) <paramref name="path"/> with <paramref name="text"/> in UTF-8 (no BOM).</summary>
    public static void WriteAllText(string path, string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        byte[] bytes = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text);
        Write(path, s => s.Write(bytes));
    }

    /// <summary>Atomically replaces (or creates) <paramref name="path"/> with <paramref name="bytes"/>.</summary>
    public static void WriteAllBytes(string path, byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        Write(path, s => s.Write(bytes));
    }

    /// <summary>
    /// Writes several files as one unit: every file is first written and flushed to its own temporary
    /// file; only when all of them succeeded are they renamed over their targets, in the order given
    /// (put the file that "commits" the set, e.g. an index, last). If any write fails, every temporary
    /// file is deleted and no target is touched. The renames themselves are individually atomic but
    /// not atomic as a group: a crash between two renames leaves the earlier ones done.
    /// </summary>
    /// <param name="files">Target paths (distinct) and the callbacks that write their content.</param>
    public static void WriteAll(IReadOnlyList<(string Path, Action<Stream> Write)> files)
    {
        ArgumentNullException.ThrowIfNull(files);
        var targets = new string[files.Count];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < files.Count; i++)
        {
            ArgumentException.ThrowIfNullOrEmpty(files[i].Path);
            ArgumentNullException.ThrowIfNull(files[i].Write);
            targets[i] = Path.GetFullPath(files[i].Path);
            if (!seen.Add(targets[i]))
            {
                throw new EngineException($"atomic write: '{targets[i]}' is named twice in one set of files");
            }

            string? dir = Path.GetDirectoryName(targets[i]);
            if (dir is null || !Directory.Exists(dir))
            {
                throw new EngineException($"could not write '{targets[i]}': directory '{dir}' does not exist");
            }
        }

        var temps = new string?[files.Count];
        int current = 0;
        try
        {
            for (current = 0; current < files.Count; current++)
            {
                temps[current] = TempPathFor(targets[current]);
                using var stream = new FileStream(temps[current]!, new FileStreamOptions
                {
                    Mode = FileMode.CreateNew,
                    Access = FileAccess.Write,
                    Share = FileShare.None,
                    BufferSize = BufferSize,
                });
                files[current].Write(stream);
                stream.Flush(flushToDisk: true);
            }
        }
        catch (Exception ex)
        {
            DeleteQuietly(temps);
            if (ex is IOException or UnauthorizedAccessException)
            {
                throw new EngineException($"could not write '{targets[current]}': {OneLine(ex.Message)}", ex);
            }

            throw;
        }

        for (current = 0; current < files.Count; current++)
        {
            try
            {
                File.Move(temps[current]!, targets[current], overwrite: true);
                temps[current] = null;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                DeleteQuietly(temps);
                string done = current == 0 ? "" : $" ({current} of {files.Count} files were already replaced)";
                throw new EngineException(
                    $"could not replace '{targets[current]}' with its new content: {OneLine(ex.Message)}{done}", ex);
            }
        }
    }

    /// <summary>A fresh hidden temporary path beside <paramref name="target"/> (same directory, so rename is atomic).</summary>
    internal static string TempPathFor(string target)
    {
        string dir = Path.GetDirectoryName(target)!;
        return Path.Combine(dir, $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.tmp");
    }

    private static void DeleteQuietly(string?[] paths)
    {
        foreach (string? p in paths)
        {
            if (p is null)
            {
                continue;
            }

            try
            {
                File.Delete(p);
            }
            catch (IOException)
            {
                // Best effort: the original error is the one worth reporting.
            }
            catch (UnauthorizedAccessException)
            {
                // Same.
            }
        }
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ");
}

using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using Engine.Core;

namespace Engine.IO;

/// <summary>
/// A Hugging Face style checkpoint directory: either one <c>model.safetensors</c>, or shards listed by
/// <c>model.safetensors.index.json</c> (<c>{"metadata": {...}, "weight_map": {name: shard file}}</c>).
/// Presents the union of the tensors by name and reads them from whichever file holds them.
/// </summary>
/// <remarks>
/// <para>Opening validates every file (see <see cref="SafeTensorsFile"/>) and the index: it must be a JSON
/// object with a "weight_map" object of strings; every shard it names must be a plain file name (no
/// directories) that exists; every name it maps must be in that shard; and every tensor in a shard must
/// be listed for that shard (so a name can never come from two files). A directory holding both
/// <c>model.safetensors</c> and the index is rejected as ambiguous rather than guessing which is current.</para>
/// <para><see cref="Write"/> writes a single file when the data fits in one shard, else
/// <c>model-0000i-of-0000n.safetensors</c> shards plus the index, as transformers does. All files are
/// written to temporary files first and renamed only after every one of them was written; the index is
/// renamed last. Files of the previous checkpoint in the directory that the new one no longer uses
/// (an old single file, old index, or old shards listed by the old index) are deleted after the commit.</para>
/// </remarks>
internal sealed class SafeTensorsCheckpoint : IDisposable
{
    /// <summary>Single-file checkpoint name.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>Shard index name.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly SafeTensorsFile[] _files;
    private readonly Dictionary<string, (SafeTensorsFile File, SafeTensorInfo Info)> _byName;
    private readonly SafeTensorInfo[] _tensors;

    private SafeTensorsCheckpoint(
        string directory, string? indexPath, SafeTensorsFile[] files,
        Dictionary<string, (SafeTensorsFile File, SafeTensorInfo Info)> byName, IReadOnlyDictionary<string, string> metadata)
    {
        Directory = directory;
        IndexPath = indexPath;
        _files = files;
        _byName = byName;
        Metadata = metadata;
        _tensors = [.. byName.Values.Select(v => v.Info)];
        Array.Sort(_tensors, static (a, b) => string.CompareOrdinal(a.Name, b.Name));
    }

    /// <summary>The checkpoint directory (full path).</summary>
    public string Directory { get; }

    /// <summary>The index file, or null for a single-file checkpoint.</summary>
    public string? IndexPath { get; }

    /// <summary>The open files (one, or the shards in index order of first appearance).</summary>
    public IReadOnlyList<SafeTensorsFile> Files => _files;

    /// <summary>Every tensor, sorted by name (ordinal).</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors => _tensors;

    /// <summary>
    /// The single file's "__metadata__", or the index's "metadata" object (string values as is, other
    /// values as their JSON text, e.g. "total_size" -> "123").
    /// </summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>
    /// Opens a checkpoint: <paramref name="path"/> is a directory (holding model.safetensors or the index),
    /// an index file (*.index.json), or a single .safetensors file.
    /// </summary>
    public static SafeTensorsCheckpoint Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        if (File.Exists(full))
        {
            return full.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
                ? OpenIndex(full)
                : OpenSingle(full);
        }

        if (!System.IO.Directory.Exists(full))
        {
            throw new EngineException($"checkpoint '{full}' does not exist");
        }

        string single = Path.Combine(full, SingleFileName);
        string index = Path.Combine(full, IndexFileName);
        bool hasSingle = File.Exists(single), hasIndex = File.Exists(index);
        if (hasSingle && hasIndex)
        {
            throw new EngineException($"checkpoint directory '{full}' holds both {SingleFileName} and {IndexFileName}; remove the stale one");
        }

        if (hasIndex)
        {
            return OpenIndex(index);
        }

        if (hasSingle)
        {
            return OpenSingle(single);
        }

        throw new EngineException($"checkpoint directory '{full}' holds neither {SingleFileName} nor {IndexFileName}");
    }

    /// <summary>Whether a tensor named <paramref name="name"/> exists.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>Looks up a tensor's entry.</summary>
    public bool TryGetInfo(string name, out SafeTensorInfo info)
    {
        if (_byName.TryGetValue(name, out var v))
        {
            info = v.Info;
            return true;
        }

        info = null!;
        return false;
    }

    /// <summary>A tensor's entry; throws an <see cref="EngineException"/> when absent.</summary>
    public SafeTensorInfo GetInfo(string name) => Locate(name).Info;

    /// <summary>The file holding <paramref name="name"/>.</summary>
    public SafeTensorsFile FileOf(string name) => Locate(name).File;

    /// <summary>Whole tensor as float32 into an exactly sized span (see <see cref="SafeTensorsFile"/>).</summary>
    public void ReadAsFloat32(string name, Span<float> destination) => FileOf(name).ReadAsFloat32(name, destination);

    /// <summary>A range of a tensor's elements as float32.</summary>
    public void ReadAsFloat32(string name, long start, Span<float> destination) => FileOf(name).ReadAsFloat32(name, start, destination);

    /// <summary>Whole tensor as a new float32 array.</summary>
    public float[] ReadAsFloat32(string name) => FileOf(name).ReadAsFloat32(name);

    /// <summary>Whole integer tensor as int32.</summary>
    public void ReadAsInt32(string name, Span<int> destination) => FileOf(name).ReadAsInt32(name, destination);

    /// <summary>Whole integer tensor as a new int32 array.</summary>
    public int[] ReadAsInt32(string name) => FileOf(name).ReadAsInt32(name);

    /// <summary>Whole integer tensor as int64.</summary>
    public void ReadAsInt64(string name, Span<long> destination) => FileOf(name).ReadAsInt64(name, destination);

    /// <summary>Whole integer tensor as a new int64 array.</summary>
    public long[] ReadAsInt64(string name) => FileOf(name).ReadAsInt64(name);

    /// <summary>Closes every file.</summary>
    public void Dispose()
    {
        foreach (SafeTensorsFile f in _files)
        {
            f.Dispose();
        }
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> into <paramref name="directory"/> (which must exist) as a
    /// checkpoint: one <c>model.safetensors</c> when the tensor data is at most
    /// <paramref name="maxShardBytes"/>, else shards plus <c>model.safetensors.index.json</c>.
    /// </summary>
    /// <param name="directory">Target directory.</param>
    /// <param name="tensors">The tensors; sharding follows the order they were added (like transformers),
    /// each shard's file is then laid out in the reference order.</param>
    /// <param name="maxShardBytes">Maximum tensor bytes per shard (headers not counted, as in transformers'
    /// max_shard_size); a single tensor larger than this gets a shard of its own.</param>
    public static void Write(string directory, SafeTensorsWriter tensors, long maxShardBytes = long.MaxValue)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(tensors);
        if (maxShardBytes <= 0)
        {
            throw new EngineException($"checkpoint: max shard size must be positive, got {maxShardBytes}");
        }

        string dir = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(dir))
        {
            throw new EngineException($"checkpoint directory '{dir}' does not exist");
        }

        List<List<SafeTensorsWriter.Entry>> shards = PlanShards(tensors.Entries, maxShardBytes);
        HashSet<string> previous = PreviousCheckpointFiles(dir);
        var files = new List<(string Path, Action<Stream> Write)>();
        var written = new HashSet<string>(StringComparer.Ordinal);
        IReadOnlyDictionary<string, string>? metadata = tensors.Metadata;
        if (shards.Count <= 1)
        {
            IReadOnlyList<SafeTensorsWriter.Entry> all = tensors.Entries;
            files.Add((Path.Combine(dir, SingleFileName), s => SafeTensorsWriter.WriteFile(s, all, metadata)));
            written.Add(SingleFileName);
        }
        else
        {
            var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
            for (int i = 0; i < shards.Count; i++)
            {
                string shardName = string.Create(CultureInfo.InvariantCulture, $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors");
                List<SafeTensorsWriter.Entry> entries = shards[i];
                foreach (SafeTensorsWriter.Entry e in entries)
                {
                    weightMap.Add(e.Name, shardName);
                }

                files.Add((Path.Combine(dir, shardName), s => SafeTensorsWriter.WriteFile(s, entries, metadata)));
                written.Add(shardName);
            }

            byte[] index = BuildIndex(tensors.DataBytes, weightMap);
            files.Add((Path.Combine(dir, IndexFileName), s => s.Write(index)));
            written.Add(IndexFileName);
        }

        AtomicFile.WriteAll(files);

        foreach (string stale in previous)
        {
            if (!written.Contains(stale))
            {
                try
                {
                    File.Delete(Path.Combine(dir, stale));
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    throw new EngineException($"checkpoint written to '{dir}', but the stale file '{stale}' could not be removed: {ex.Message.ReplaceLineEndings(" ")}", ex);
                }
            }
        }
    }

    /// <summary>Greedy split in insertion order: start a new shard when the next tensor would exceed the limit.</summary>
    internal static List<List<SafeTensorsWriter.Entry>> PlanShards(IReadOnlyList<SafeTensorsWriter.Entry> entries, long maxShardBytes)
    {
        var shards = new List<List<SafeTensorsWriter.Entry>>();
        List<SafeTensorsWriter.Entry>? current = null;
        long size = 0;
        foreach (SafeTensorsWriter.Entry e in entries)
        {
            if (current is null || (current.Count > 0 && size + e.ByteLength > maxShardBytes))
            {
                current = [];
                shards.Add(current);
                size = 0;
            }

            current.Add(e);
            size += e.ByteLength;
        }

        return shards;
    }

    private static byte[] BuildIndex(long totalSize, SortedDictionary<string, string> weightMap)
    {
        using var ms = new MemoryStream();
        using (var json = new Utf8JsonWriter(ms, new JsonWriterOptions
        {
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            Indented = true,
        }))
        {
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", totalSize);
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (KeyValuePair<string, string> kv in weightMap)
            {
                json.WriteString(kv.Key, kv.Value);
            }

            json.WriteEndObject();
            json.WriteEndObject();
        }

        ms.WriteByte((byte)'\n');
        return ms.ToArray();
    }

    /// <summary>File names (in <paramref name="dir"/>) making up the checkpoint there now, best effort.</summary>
    private static HashSet<string> PreviousCheckpointFiles(string dir)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        if (File.Exists(Path.Combine(dir, SingleFileName)))
        {
            names.Add(SingleFileName);
        }

        string index = Path.Combine(dir, IndexFileName);
        if (!File.Exists(index))
        {
            return names;
        }

        names.Add(IndexFileName);
        try
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(index));
            if (doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("weight_map", out JsonElement map)
                && map.ValueKind == JsonValueKind.Object)
            {
                foreach (JsonProperty kv in map.EnumerateObject())
                {
                    if (kv.Value.ValueKind == JsonValueKind.String && IsPlainFileName(kv.Value.GetString()!)
                        && File.Exists(Path.Combine(dir, kv.Value.GetString()!)))
                    {
                        names.Add(kv.Value.GetString()!);
                    }
                }
            }
        }
        catch (JsonException)
        {
            // An unreadable old index is replaced; its shards (unknown) are left alone.
        }

        return names;
    }

    private (SafeTensorsFile File, SafeTensorInfo Info) Locate(string name)
    {
        if (!_byName.TryGetValue(name, out var v))
        {
            throw new EngineException($"checkpoint '{IndexPath ?? _files[0].FilePath}': no tensor named '{name}'");
        }

        return v;
    }

    private static SafeTensorsCheckpoint OpenSingle(string file)
    {
        SafeTensorsFile f = SafeTensorsFile.Open(file);
        var byName = new Dictionary<string, (SafeTensorsFile, SafeTensorInfo)>(StringComparer.Ordinal);
        foreach (SafeTensorInfo t in f.Tensors)
        {
            byName.Add(t.Name, (f, t));
        }

        return new SafeTensorsCheckpoint(Path.GetDirectoryName(file)!, null, [f], byName, f.Metadata);
    }

    private static SafeTensorsCheckpoint OpenIndex(string indexPath)
    {
        EngineException Bad(string problem) => new($"checkpoint index '{indexPath}': {problem}");

        string dir = Path.GetDirectoryName(indexPath)!;
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(indexPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw Bad($"could not read: {ex.Message.ReplaceLineEndings(" ")}");
        }

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var weightMap = new List<(string Name, string Shard)>();
        var shardOrder = new List<string>();
        JsonDocument doc = UserJson.ParseDocument(bytes, $"checkpoint index '{indexPath}'");

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw Bad("not a JSON object");
            }

            if (doc.RootElement.TryGetProperty("metadata", out JsonElement meta) && meta.ValueKind != JsonValueKind.Null)
            {
                if (meta.ValueKind != JsonValueKind.Object)
                {
                    throw Bad("\"metadata\" is not an object");
                }

                foreach (JsonProperty kv in meta.EnumerateObject())
                {
                    metadata[kv.Name] = kv.Value.ValueKind == JsonValueKind.String ? kv.Value.GetString()! : kv.Value.GetRawText();
                }
            }

            if (!doc.RootElement.TryGetProperty("weight_map", out JsonElement map) || map.ValueKind != JsonValueKind.Object)
            {
                throw Bad("no \"weight_map\" object");
            }

            var seen = new HashSet<string>(StringComparer.Ordinal);
            var seenShards = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty kv in map.EnumerateObject())
            {
                if (!seen.Add(kv.Name))
                {
                    throw Bad($"\"weight_map\" lists tensor '{kv.Name}' twice");
                }

                if (kv.Value.ValueKind != JsonValueKind.String)
                {
                    throw Bad($"\"weight_map\" entry for '{kv.Name}' is not a file name string");
                }

                string shard = kv.Value.GetString()!;
                if (!IsPlainFileName(shard))
                {
                    throw Bad($"shard name '{shard}' (for '{kv.Name}') is not a plain file name in the index's directory");
                }

                weightMap.Add((kv.Name, shard));
                if (seenShards.Add(shard))
                {
                    shardOrder.Add(shard);
                }
            }
        }

        foreach (string shard in shardOrder)
        {
            if (!File.Exists(Path.Combine(dir, shard)))
            {
                throw Bad($"names shard '{shard}', which does not exist in '{dir}'");
            }
        }

        var files = new List<SafeTensorsFile>();
        try
        {
            var byShard = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            foreach (string shard in shardOrder)
            {
                SafeTensorsFile f = SafeTensorsFile.Open(Path.Combine(dir, shard));
                files.Add(f);
                byShard.Add(shard, f);
            }

            var byName = new Dictionary<string, (SafeTensorsFile, SafeTensorInfo)>(weightMap.Count, StringComparer.Ordinal);
            foreach ((string name, string shard) in weightMap)
            {
                SafeTensorsFile f = byShard[shard];
                if (!f.TryGetInfo(name, out SafeTensorInfo info))
                {
                    throw Bad($"maps '{name}' to shard '{shard}', which has no such tensor");
                }

                byName.Add(name, (f, info));
            }

            foreach ((string shard, SafeTensorsFile f) in byShard)
            {
                foreach (SafeTensorInfo t in f.Tensors)
                {
                    if (!byName.TryGetValue(t.Name, out var owner) || !ReferenceEquals(owner.Item1, f))
                    {
                        throw Bad($"shard '{shard}' holds tensor '{t.Name}', which the weight_map does not assign to it");
                    }
                }
            }

            return new SafeTensorsCheckpoint(dir, indexPath, [.. files], byName, metadata);
        }
        catch
        {
            foreach (SafeTensorsFile f in files)
            {
                f.Dispose();
            }

            throw;
        }
    }

    private static bool IsPlainFileName(string name) =>
        name.Length > 0 && name != "." && name != ".."
        && name.IndexOfAny(['/', '\\']) < 0
        && !Path.IsPathRooted(name)
        && name.IndexOfAny(Path.GetInvalidFileNameChars()) < 0;
}

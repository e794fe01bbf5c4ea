using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Engine.Core;

namespace Engine.IO;

/// <summary>
/// Fills <paramref name="destination"/> with the tensor's elements [elementOffset, elementOffset +
/// destination.Length) in row-major order. The writer calls it repeatedly with consecutive bounded
/// chunks, so a large tensor (e.g. read back from a device) is never materialised twice in memory.
/// </summary>
internal delegate void TensorDataSource(long elementOffset, Span<float> destination);

/// <summary>
/// Collects named tensors and writes them as one safetensors file, atomically (see <see cref="AtomicFile"/>).
/// </summary>
/// <remarks>
/// Layout follows the reference implementation (huggingface/safetensors <c>serialize</c>): tensors
/// are sorted by dtype alignment descending (the order of <see cref="SafeTensorsDType"/>), then by name
/// (ordinal UTF-8 byte order), and laid out back to back in that order; the header is compact JSON with
/// "__metadata__" first (keys sorted), right-padded with spaces to a multiple of 8 bytes so the data
/// section starts 8-byte aligned. For the same inputs the bytes equal the reference's (the reference
/// writes metadata keys in hash order, so with two or more metadata keys only the order may differ).
/// Float data can be stored as F32, F16 or BF16 (both round to nearest even); integer data as I32/I64.
/// </remarks>
internal sealed class SafeTensorsWriter
{
    private const int ChunkElements = 1 << 18;

    private readonly List<Entry> _entries = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    /// <summary>Creates an empty writer.</summary>
    /// <param name="metadata">Written as "__metadata__" (omitted when null).</param>
    public SafeTensorsWriter(IReadOnlyDictionary<string, string>? metadata = null)
    {
        Metadata = metadata;
    }

    /// <summary>The "__metadata__" map written into the file (each shard, when sharded).</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; }

    /// <summary>Number of tensors added.</summary>
    public int Count => _entries.Count;

    /// <summary>Total bytes of tensor data (excluding headers).</summary>
    public long DataBytes { get; private set; }

    /// <summary>Tensors in the order they were added.</summary>
    internal IReadOnlyList<Entry> Entries => _entries;

    /// <summary>Adds a float tensor whose data is in memory (length must equal product(shape)).</summary>
    /// <param name="name">Unique name.</param>
    /// <param name="shape">Dimensions (empty for a scalar); copied.</param>
    /// <param name="data">The elements; referenced, not copied, until written.</param>
    /// <param name="dtype">Stored type: F32, F16 or BF16.</param>
    public void Add(string name, ReadOnlySpan<int> shape, ReadOnlyMemory<float> data, SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        CheckFloatType(name, dtype);
        Entry e = NewEntry(name, shape, dtype);
        CheckLength(e, data.Length);
        e.Floats = data;
        Commit(e);
    }

    /// <summary>Adds a float tensor whose data is produced in chunks by <paramref name="source"/> at write time.</summary>
    public void Add(string name, ReadOnlySpan<int> shape, TensorDataSource source, SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        ArgumentNullException.ThrowIfNull(source);
        CheckFloatType(name, dtype);
        Entry e = NewEntry(name, shape, dtype);
        e.Source = source;
        Commit(e);
    }

    /// <summary>Adds an I32 tensor.</summary>
    public void AddInt32(string name, ReadOnlySpan<int> shape, ReadOnlyMemory<int> data)
    {
        Entry e = NewEntry(name, shape, SafeTensorsDType.I32);
        CheckLength(e, data.Length);
        e.Int32s = data;
        Commit(e);
    }

    /// <summary>Adds an I64 tensor.</summary>
    public void AddInt64(string name, ReadOnlySpan<int> shape, ReadOnlyMemory<long> data)
    {
        Entry e = NewEntry(name, shape, SafeTensorsDType.I64);
        CheckLength(e, data.Length);
        e.Int64s = data;
        Commit(e);
    }

    /// <summary>Writes every tensor to <paramref name="path"/> atomically (temp file, flush, rename).</summary>
    public void Write(string path) => AtomicFile.Write(path, WriteTo);

    /// <summary>Writes the file's bytes to <paramref name="stream"/>.</summary>
    public void WriteTo(Stream stream) => WriteFile(stream, _entries, Metadata);

    /// <summary>Writes one safetensors file holding <paramref name="entries"/> (any order; sorted here).</summary>
    internal static void WriteFile(Stream stream, IReadOnlyList<Entry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new EngineException("safetensors I/O needs a little-endian host");
        }

        Entry[] sorted = [.. entries];
        Array.Sort(sorted, static (a, b) =>
        {
            int c = b.DType.CompareTo(a.DType);
            return c != 0 ? c : a.NameUtf8.AsSpan().SequenceCompareTo(b.NameUtf8);
        });

        byte[] header = BuildHeader(sorted, metadata);
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        stream.Write(prefix);
        stream.Write(header);

        float[]? floatChunk = null;
        byte[]? byteChunk = null;
        foreach (Entry e in sorted)
        {
            WriteData(stream, e, ref floatChunk, ref byteChunk);
        }
    }

    private static byte[] BuildHeader(Entry[] sorted, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var json = new Utf8JsonWriter(ms, new JsonWriterOptions
        {
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            Indented = false,
        }))
        {
            json.WriteStartObject();
            if (metadata is not null)
            {
                json.WriteStartObject("__metadata__");
                string[] keys = [.. metadata.Keys];
                Array.Sort(keys, StringComparer.Ordinal);
                foreach (string k in keys)
                {
                    json.WriteString(k, metadata[k]);
                }

                json.WriteEndObject();
            }

            long offset = 0;
            foreach (Entry e in sorted)
            {
                json.WriteStartObject(e.Name);
                json.WriteString("dtype", SafeTensorsDTypes.Name(e.DType));
                json.WriteStartArray("shape");
                foreach (int d in e.Shape)
                {
                    json.WriteNumberValue(d);
                }

                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + e.ByteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += e.ByteLength;
            }

            json.WriteEndObject();
        }

        int pad = (int)((8 - (ms.Length % 8)) % 8);
        for (int i = 0; i < pad; i++)
        {
            ms.WriteByte((byte)' ');
        }

        return ms.ToArray();
    }

    private static void WriteData(Stream stream, Entry e, ref float[]? floatChunk, ref byte[]? byteChunk)
    {
        if (e.ElementCount == 0)
        {
            return;
        }

        if (e.Int32s is { } ints)
        {
            for (int done = 0; done < ints.Length; done += ChunkElements)
            {
                stream.Write(MemoryMarshal.AsBytes(ints.Span.Slice(done, Math.Min(ChunkElements, ints.Length - done))));
            }

            return;
        }

        if (e.Int64s is { } longs)
        {
            for (int done = 0; done < longs.Length; done += ChunkElements)
            {
                stream.Write(MemoryMarshal.AsBytes(longs.Span.Slice(done, Math.Min(ChunkElements, longs.Length - done))));
            }

            return;
        }

        for (long done = 0; done < e.ElementCount;)
        {
            int n = (int)Math.Min(ChunkElements, e.ElementCount - done);
            ReadOnlySpan<float> src;
            if (e.Source is { } source)
            {
                floatChunk ??= new float[ChunkElements];
                Span<float> chunk = floatChunk.AsSpan(0, n);
                source(done, chunk);
                src = chunk;
            }
            else
            {
                src = e.Floats.Span.Slice((int)done, n);
            }

            switch (e.DType)
            {
                case SafeTensorsDType.F32:
                    stream.Write(MemoryMarshal.AsBytes(src));
                    break;
                case SafeTensorsDType.F16:
                    byteChunk ??= new byte[ChunkElements * 2];
                    ElementConversion.F32ToF16(src, MemoryMarshal.Cast<byte, ushort>(byteChunk.AsSpan(0, n * 2)));
                    stream.Write(byteChunk, 0, n * 2);
                    break;
                default:
                    byteChunk ??= new byte[ChunkElements * 2];
                    ElementConversion.F32ToBF16(src, MemoryMarshal.Cast<byte, ushort>(byteChunk.AsSpan(0, n * 2)));
                    stream.Write(byteChunk, 0, n * 2);
                    break;
            }

            done += n;
        }
    }

    private Entry NewEntry(string name, ReadOnlySpan<int> shape, SafeTensorsDType dtype)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name == "__metadata__")
        {
            throw new EngineException("safetensors writer: '__metadata__' is reserved and cannot name a tensor");
        }

        if (_names.Contains(name))
        {
            throw new EngineException($"safetensors writer: duplicate tensor name '{name}'");
        }

        long count = 1;
        foreach (int d in shape)
        {
            if (d < 0)
            {
                throw new EngineException($"safetensors writer: tensor '{name}' has negative dimension {d} in shape {SafeTensorInfo.FormatShape(shape)}");
            }

            try
            {
                count = checked(count * d);
                _ = checked(count * 8);
            }
            catch (OverflowException)
            {
                throw new EngineException($"safetensors writer: tensor '{name}' shape {SafeTensorInfo.FormatShape(shape)} is too large");
            }
        }

        return new Entry(name, Encoding.UTF8.GetBytes(name), dtype, shape.ToArray(), count);
    }

    private static void CheckLength(Entry e, int length)
    {
        if (length != e.ElementCount)
        {
            throw new EngineException($"safetensors writer: tensor '{e.Name}' shape {SafeTensorInfo.FormatShape(e.Shape)} " +
                $"has {e.ElementCount} elements but {length} values were given");
        }
    }

    private static void CheckFloatType(string name, SafeTensorsDType dtype)
    {
        if (dtype is not (SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16))
        {
            throw new EngineException($"safetensors writer: tensor '{name}': float data can be stored as F32, F16 or BF16, not {SafeTensorsDTypes.Name(dtype)}");
        }
    }

    private void Commit(Entry e)
    {
        _names.Add(e.Name);
        _entries.Add(e);
        DataBytes += e.ByteLength;
    }

    /// <summary>One tensor to write.</summary>
    internal sealed class Entry
    {
        /// <summary>Creates an entry with no data attached yet.</summary>
        public Entry(string name, byte[] nameUtf8, SafeTensorsDType dtype, int[] shape, long elementCount)
        {
            Name = name;
            NameUtf8 = nameUtf8;
            DType = dtype;
            Shape = shape;
            ElementCount = elementCount;
            ByteLength = elementCount * SafeTensorsDTypes.Size(dtype);
        }

        /// <summary>Tensor name.</summary>
        public string Name { get; }

        /// <summary>Name in UTF-8 (the sort key, as in the reference).</summary>
        public byte[] NameUtf8 { get; }

        /// <summary>Stored type.</summary>
        public SafeTensorsDType DType { get; }

        /// <summary>Dimensions.</summary>
        public int[] Shape { get; }

        /// <summary>Product of the dimensions.</summary>
        public long ElementCount { get; }

        /// <summary>Stored size in bytes.</summary>
        public long ByteLength { get; }

        /// <summary>In-memory float data, when given that way.</summary>
        public ReadOnlyMemory<float> Floats { get; set; }

        /// <summary>Chunked float source, when given that way.</summary>
        public TensorDataSource? Source { get; set; }

        /// <summary>I32 data.</summary>
        public ReadOnlyMemory<int>? Int32s { get; set; }

        /// <summary>I64 data.</summary>
        public ReadOnlyMemory<long>? Int64s { get; set; }
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using Engine.Core;
using Microsoft.Win32.SafeHandles;

namespace Engine.IO;

/// <summary>
/// Reads one safetensors file: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
/// (name -> {dtype, shape, data_offsets}, plus an optional "__metadata__" string map), then the data.
/// </summary>
/// <remarks>
/// <para>Only the header is read when opening; tensor data is read on demand with positional reads
/// (<see cref="RandomAccess"/>), so multi-GB files cost no memory up front, reads are thread-safe, and
/// data offsets need not be aligned to the element size (bytes go through an aligned scratch buffer,
/// or straight into the destination when no conversion is needed).</para>
/// <para>Validation is strict and mirrors the reference implementation: the header length is bounded
/// (100,000,000 bytes), the header must be a JSON object starting with '{', every entry must be
/// well formed with a known dtype and non-negative dimensions, each tensor's byte range must lie in the
/// data section and match product(shape) * dtype size, names must be unique, and the tensors, sorted by
/// offset, must tile the data section exactly: overlaps are rejected, and so are gaps and uncovered
/// trailing bytes. Rejecting gaps is the safer choice: a conforming writer never produces them (the
/// reference reader rejects such files too), and uncovered bytes would be data nobody validates.
/// Unknown extra keys inside a tensor entry are ignored, as the reference does.</para>
/// <para>Reads may run concurrently from several threads (positional reads, no shared cursor); do not
/// dispose while reading.</para>
/// <para>Every problem raises an <see cref="EngineException"/> whose one-line message names the file
/// and the problem.</para>
/// </remarks>
internal sealed class SafeTensorsFile : IDisposable
{
    /// <summary>Largest header accepted (the reference implementation's limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>Scratch size for converting reads.</summary>
    private const int ChunkBytes = 1 << 20;

    /// <summary>Largest single read straight into a destination.</summary>
    private const int DirectChunkBytes = 1 << 22;

    private readonly SafeFileHandle _handle;
    private readonly SafeTensorInfo[] _tensors;
    private readonly Dictionary<string, SafeTensorInfo> _byName;

    private SafeTensorsFile(
        string path, SafeFileHandle handle, long length, long dataStart,
        SafeTensorInfo[] tensors, Dictionary<string, SafeTensorInfo> byName, Dictionary<string, string> metadata)
    {
        FilePath = path;
        _handle = handle;
        FileLength = length;
        DataStart = dataStart;
        _tensors = tensors;
        _byName = byName;
        Metadata = metadata;
    }

    /// <summary>Full path of the file.</summary>
    public string FilePath { get; }

    /// <summary>File size in bytes at open.</summary>
    public long FileLength { get; }

    /// <summary>File offset of the data section (8 + header length).</summary>
    public long DataStart { get; }

    /// <summary>The tensors, in data-offset order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors => _tensors;

    /// <summary>The "__metadata__" map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens and validates <paramref name="path"/>; only the header is read.</summary>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian)
        {
            throw new EngineException("safetensors I/O needs a little-endian host");
        }

        string full = System.IO.Path.GetFullPath(path);
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(full, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw Bad(full, "file does not exist");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw Bad(full, $"could not open: {OneLine(ex.Message)}");
        }

        try
        {
            long length = RandomAccess.GetLength(handle);
            if (length < 8)
            {
                throw Bad(full, $"file is {length} bytes, shorter than 8 bytes (the header length field)");
            }

            Span<byte> prefix = stackalloc byte[8];
            ReadExactly(handle, prefix, 0, full);
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (n > (ulong)(length - 8))
            {
                throw Bad(full, $"header length {n} runs past the end of the file ({length} bytes)");
            }

            if (n > MaxHeaderBytes)
            {
                throw Bad(full, $"header length {n} is too large (limit {MaxHeaderBytes} bytes)");
            }

            var header = new byte[n];
            ReadExactly(handle, header, 8, full);
            long dataStart = 8 + (long)n;
            (SafeTensorInfo[] tensors, Dictionary<string, string> metadata) = ParseHeader(full, header, length - dataStart);
            var byName = new Dictionary<string, SafeTensorInfo>(tensors.Length, StringComparer.Ordinal);
            foreach (SafeTensorInfo t in tensors)
            {
                byName.Add(t.Name, t);
            }

            return new SafeTensorsFile(full, handle, length, dataStart, tensors, byName, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Whether the file holds a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>Looks up a tensor's entry.</summary>
    public bool TryGetInfo(string name, out SafeTensorInfo info) => _byName.TryGetValue(name, out info!);

    /// <summary>A tensor's entry; throws an <see cref="EngineException"/> naming the file when absent.</summary>
    public SafeTensorInfo GetInfo(string name)
    {
        if (!_byName.TryGetValue(name, out SafeTensorInfo? info))
        {
            throw Bad(FilePath, $"no tensor named '{name}'");
        }

        return info;
    }

    /// <summary>Copies a tensor's stored bytes (little-endian, row-major) into <paramref name="destination"/> (exact size).</summary>
    public void ReadBytes(string name, Span<byte> destination)
    {
        SafeTensorInfo info = GetInfo(name);
        if (destination.Length != info.ByteLength)
        {
            throw Bad(FilePath, $"tensor '{name}' holds {info.ByteLength} bytes but the destination holds {destination.Length}");
        }

        for (int done = 0; done < destination.Length;)
        {
            int n = Math.Min(DirectChunkBytes, destination.Length - done);
            ReadExactly(_handle, destination.Slice(done, n), DataStart + info.DataBegin + done, FilePath);
            done += n;
        }
    }

    /// <summary>Whole tensor as float32 (F32, F16, BF16 or F64 stored), into an exactly sized span.</summary>
    public void ReadAsFloat32(string name, Span<float> destination)
    {
        SafeTensorInfo info = GetInfo(name);
        CheckWhole(info, destination.Length);
        ReadAsFloat32(info, 0, destination);
    }

    /// <summary>
    /// Elements [<paramref name="start"/>, start + destination.Length) of a tensor (flat row-major index) as
    /// float32; lets callers stream huge tensors through a bounded buffer.
    /// </summary>
    public void ReadAsFloat32(string name, long start, Span<float> destination)
    {
        SafeTensorInfo info = GetInfo(name);
        if (start < 0 || start > info.ElementCount - destination.Length)
        {
            throw Bad(FilePath, $"elements [{start}, {start + destination.Length}) are outside tensor '{name}' ({info.ElementCount} elements)");
        }

        ReadAsFloat32(info, start, destination);
    }

    /// <summary>Whole tensor as a new float32 array.</summary>
    public float[] ReadAsFloat32(string name)
    {
        SafeTensorInfo info = GetInfo(name);
        var result = new float[CheckArrayLength(info)];
        ReadAsFloat32(info, 0, result);
        return result;
    }

    /// <summary>
    /// Whole tensor as int32: I32 is copied; BOOL, U8, I8, I16, U16 are widened; U32, I64, U64 are
    /// narrowed with a range check (an element outside int32 raises an error naming it).
    /// </summary>
    public void ReadAsInt32(string name, Span<int> destination)
    {
        SafeTensorInfo info = GetInfo(name);
        CheckWhole(info, destination.Length);
        if (!IsInteger(info.DType))
        {
            throw CannotRead(info, "int32");
        }

        if (info.DType == SafeTensorsDType.I32)
        {
            ReadDirect(info, 0, MemoryMarshal.AsBytes(destination));
            return;
        }

        int size = SafeTensorsDTypes.Size(info.DType);
        byte[] scratch = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        try
        {
            int perChunk = ChunkBytes / size;
            for (int done = 0; done < destination.Length;)
            {
                int n = Math.Min(perChunk, destination.Length - done);
                Span<byte> raw = scratch.AsSpan(0, n * size);
                ReadExactly(_handle, raw, DataStart + info.DataBegin + ((long)done * size), FilePath);
                Span<int> dst = destination.Slice(done, n);
                for (int i = 0; i < n; i++)
                {
                    long v = IntegerAt(info, raw, i, done);
                    if (v is < int.MinValue or > int.MaxValue)
                    {
                        throw Bad(FilePath, $"tensor '{info.Name}' element {done + i} = {v} does not fit in int32");
                    }

                    dst[i] = (int)v;
                }

                done += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <summary>Whole tensor as a new int32 array (see <see cref="ReadAsInt32(string, Span{int})"/>).</summary>
    public int[] ReadAsInt32(string name)
    {
        SafeTensorInfo info = GetInfo(name);
        var result = new int[CheckArrayLength(info)];
        ReadAsInt32(name, result);
        return result;
    }

    /// <summary>Whole tensor as int64: any integer dtype (U64 elements above long.MaxValue raise an error).</summary>
    public void ReadAsInt64(string name, Span<long> destination)
    {
        SafeTensorInfo info = GetInfo(name);
        CheckWhole(info, destination.Length);
        if (!IsInteger(info.DType))
        {
            throw CannotRead(info, "int64");
        }

        if (info.DType == SafeTensorsDType.I64)
        {
            ReadDirect(info, 0, MemoryMarshal.AsBytes(destination));
            return;
        }

        int size = SafeTensorsDTypes.Size(info.DType);
        byte[] scratch = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        try
        {
            int perChunk = ChunkBytes / size;
            for (int done = 0; done < destination.Length;)
            {
                int n = Math.Min(perChunk, destination.Length - done);
                Span<byte> raw = scratch.AsSpan(0, n * size);
                ReadExactly(_handle, raw, DataStart + info.DataBegin + ((long)done * size), FilePath);
                Span<long> dst = destination.Slice(done, n);
                for (int i = 0; i < n; i++)
                {
                    dst[i] = IntegerAt(info, raw, i, done);
                }

                done += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <summary>Whole tensor as a new int64 array (see <see cref="ReadAsInt64(string, Span{long})"/>).</summary>
    public long[] ReadAsInt64(string name)
    {
        SafeTensorInfo info = GetInfo(name);
        var result = new long[CheckArrayLength(info)];
        ReadAsInt64(name, result);
        return result;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _handle.Dispose();

    private void ReadAsFloat32(SafeTensorInfo info, long start, Span<float> destination)
    {
        switch (info.DType)
        {
            case SafeTensorsDType.F32:
                ReadDirect(info, start * 4, MemoryMarshal.AsBytes(destination));
                return;
            case SafeTensorsDType.F16:
            case SafeTensorsDType.BF16:
            case SafeTensorsDType.F64:
                break;
            default:
                throw CannotRead(info, "float32");
        }

        int size = SafeTensorsDTypes.Size(info.DType);
        byte[] scratch = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        try
        {
            int perChunk = ChunkBytes / size;
            for (int done = 0; done < destination.Length;)
            {
                int n = Math.Min(perChunk, destination.Length - done);
                Span<byte> raw = scratch.AsSpan(0, n * size);
                ReadExactly(_handle, raw, DataStart + info.DataBegin + ((start + done) * size), FilePath);
                Span<float> dst = destination.Slice(done, n);
                switch (info.DType)
                {
                    case SafeTensorsDType.F16:
                        ElementConversion.F16ToF32(MemoryMarshal.Cast<byte, ushort>(raw), dst);
                        break;
                    case SafeTensorsDType.BF16:
                        ElementConversion.BF16ToF32(MemoryMarshal.Cast<byte, ushort>(raw), dst);
                        break;
                    default:
                        ReadOnlySpan<double> d = MemoryMarshal.Cast<byte, double>(raw);
                        for (int i = 0; i < n; i++)
                        {
                            dst[i] = (float)d[i];
                        }

                        break;
                }

                done += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <summary>Reads bytes of a tensor with no conversion, in bounded pieces.</summary>
    private void ReadDirect(SafeTensorInfo info, long byteOffset, Span<byte> destination)
    {
        for (int done = 0; done < destination.Length;)
        {
            int n = Math.Min(DirectChunkBytes, destination.Length - done);
            ReadExactly(_handle, destination.Slice(done, n), DataStart + info.DataBegin + byteOffset + done, FilePath);
            done += n;
        }
    }

    private long IntegerAt(SafeTensorInfo info, ReadOnlySpan<byte> raw, int i, int done)
    {
        switch (info.DType)
        {
            case SafeTensorsDType.Bool:
            case SafeTensorsDType.U8:
                return raw[i];
            case SafeTensorsDType.I8:
                return (sbyte)raw[i];
            case SafeTensorsDType.I16:
                return BinaryPrimitives.ReadInt16LittleEndian(raw[(i * 2)..]);
            case SafeTensorsDType.U16:
                return BinaryPrimitives.ReadUInt16LittleEndian(raw[(i * 2)..]);
            case SafeTensorsDType.I32:
                return BinaryPrimitives.ReadInt32LittleEndian(raw[(i * 4)..]);
            case SafeTensorsDType.U32:
                return BinaryPrimitives.ReadUInt32LittleEndian(raw[(i * 4)..]);
            case SafeTensorsDType.I64:
                return BinaryPrimitives.ReadInt64LittleEndian(raw[(i * 8)..]);
            default:
                ulong u = BinaryPrimitives.ReadUInt64LittleEndian(raw[(i * 8)..]);
                if (u > long.MaxValue)
                {
                    throw Bad(FilePath, $"tensor '{info.Name}' element {done + i} = {u} does not fit in int64");
                }

                return (long)u;
        }
    }

    private static bool IsInteger(SafeTensorsDType t) => t is SafeTensorsDType.Bool or SafeTensorsDType.U8
        or SafeTensorsDType.I8 or SafeTensorsDType.I16 or SafeTensorsDType.U16 or SafeTensorsDType.I32
        or SafeTensorsDType.U32 or SafeTensorsDType.I64 or SafeTensorsDType.U64;

    private EngineException CannotRead(SafeTensorInfo info, string what) =>
        Bad(FilePath, $"tensor '{info.Name}' has dtype {SafeTensorsDTypes.Name(info.DType)}, which cannot be read as {what}");

    private void CheckWhole(SafeTensorInfo info, int destinationLength)
    {
        if (destinationLength != info.ElementCount)
        {
            throw Bad(FilePath, $"tensor '{info.Name}' {info.ShapeText} has {info.ElementCount} elements but the destination holds {destinationLength}");
        }
    }

    private int CheckArrayLength(SafeTensorInfo info)
    {
        if (info.ElementCount > Array.MaxLength)
        {
            throw Bad(FilePath, $"tensor '{info.Name}' has {info.ElementCount} elements, too many for one array; read it in ranges");
        }

        return (int)info.ElementCount;
    }

    private static void ReadExactly(SafeFileHandle handle, Span<byte> destination, long offset, string path)
    {
        while (!destination.IsEmpty)
        {
            int n;
            try
            {
                n = RandomAccess.Read(handle, destination, offset);
            }
            catch (IOException ex)
            {
                throw Bad(path, $"read failed at offset {offset}: {OneLine(ex.Message)}");
            }

            if (n <= 0)
            {
                throw Bad(path, $"file ended early at offset {offset} (was it truncated while open?)");
            }

            destination = destination[n..];
            offset += n;
        }
    }

    /// <summary>Parses and validates a header; returns the tensors in data-offset order and the metadata.</summary>
    internal static (SafeTensorInfo[] Tensors, Dictionary<string, string> Metadata) ParseHeader(
        string path, byte[] header, long dataLength)
    {
        if (header.Length == 0 || header[0] != (byte)'{')
        {
            throw Bad(path, "header is not a JSON object (it must start with '{')");
        }

        if (!System.Text.Unicode.Utf8.IsValid(header))
        {
            throw Bad(path, "header is not valid UTF-8");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException ex)
        {
            throw Bad(path, $"header is not valid JSON: {OneLine(ex.Message)}");
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw Bad(path, "header is not a JSON object");
            }

            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var names = new HashSet<string>(StringComparer.Ordinal);
            var tensors = new List<SafeTensorInfo>();
            foreach (JsonProperty entry in doc.RootElement.EnumerateObject())
            {
                string name = entry.Name;
                if (!names.Add(name))
                {
                    throw Bad(path, name == "__metadata__" ? "header has two \"__metadata__\" entries" : $"duplicate tensor name '{name}'");
                }

                if (name == "__metadata__")
                {
                    ParseMetadata(path, entry.Value, metadata);
                    continue;
                }

                tensors.Add(ParseEntry(path, name, entry.Value, dataLength));
            }

            SafeTensorInfo[] sorted = [.. tensors];
            Array.Sort(sorted, static (a, b) =>
            {
                int c = a.DataBegin.CompareTo(b.DataBegin);
                if (c == 0)
                {
                    c = a.DataEnd.CompareTo(b.DataEnd);
                }

                return c != 0 ? c : string.CompareOrdinal(a.Name, b.Name);
            });
            CheckCoverage(path, sorted, dataLength);
            return (sorted, metadata);
        }
    }

    private static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Bad(path, "\"__metadata__\" is not an object of strings");
        }

        foreach (JsonProperty kv in value.EnumerateObject())
        {
            if (kv.Value.ValueKind != JsonValueKind.String)
            {
                throw Bad(path, $"\"__metadata__\" value for '{kv.Name}' is not a string");
            }

            if (!metadata.TryAdd(kv.Name, kv.Value.GetString()!))
            {
                throw Bad(path, $"\"__metadata__\" has duplicate key '{kv.Name}'");
            }
        }
    }

    private static SafeTensorInfo ParseEntry(string path, string name, JsonElement value, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Bad(path, $"entry '{name}' is not an object with dtype, shape and data_offsets");
        }

        if (!value.TryGetProperty("dtype", out JsonElement dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw Bad(path, $"entry '{name}' has no \"dtype\" string");
        }

        string dtypeName = dtypeElement.GetString()!;
        if (!SafeTensorsDTypes.TryParse(dtypeName, out SafeTensorsDType dtype))
        {
            throw Bad(path, $"tensor '{name}' has unknown or unsupported dtype '{dtypeName}'");
        }

        if (!value.TryGetProperty("shape", out JsonElement shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
        {
            throw Bad(path, $"entry '{name}' has no \"shape\" array");
        }

        var shape = new int[shapeElement.GetArrayLength()];
        int k = 0;
        bool hasZero = false;
        foreach (JsonElement d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim))
            {
                throw Bad(path, $"tensor '{name}' has a shape entry that is not an integer ({OneLine(d.GetRawText())})");
            }

            if (dim < 0)
            {
                throw Bad(path, $"tensor '{name}' has negative dimension {dim} in its shape");
            }

            if (dim > int.MaxValue)
            {
                throw Bad(path, $"tensor '{name}' has dimension {dim}, larger than supported ({int.MaxValue})");
            }

            hasZero |= dim == 0;
            shape[k++] = (int)dim;
        }

        if (!value.TryGetProperty("data_offsets", out JsonElement offsets) || offsets.ValueKind != JsonValueKind.Array
            || offsets.GetArrayLength() != 2
            || !TryGetOffset(offsets[0], out long begin) || !TryGetOffset(offsets[1], out long end))
        {
            throw Bad(path, $"entry '{name}' has no \"data_offsets\" pair [begin, end] of non-negative integers");
        }

        if (begin > end)
        {
            throw Bad(path, $"tensor '{name}' has data_offsets [{begin},{end}] with begin after end");
        }

        if (end > dataLength)
        {
            throw Bad(path, $"tensor '{name}' has data_offsets [{begin},{end}] out of range of the data section ({dataLength} bytes)");
        }

        int size = SafeTensorsDTypes.Size(dtype);
        long count = 1, bytes;
        try
        {
            if (hasZero)
            {
                count = 0;
            }
            else
            {
                foreach (int d in shape)
                {
                    count = checked(count * d);
                }
            }

            bytes = checked(count * size);
        }
        catch (OverflowException)
        {
            throw Bad(path, $"tensor '{name}' has shape {SafeTensorInfo.FormatShape(shape)} whose size overflows");
        }

        if (end - begin != bytes)
        {
            throw Bad(path, $"tensor '{name}' size mismatch: data_offsets [{begin},{end}] hold {end - begin} bytes " +
                $"but {dtypeName} {SafeTensorInfo.FormatShape(shape)} needs {bytes} bytes");
        }

        return new SafeTensorInfo(name, dtype, shape, count, begin, end);
    }

    private static bool TryGetOffset(JsonElement e, out long value)
    {
        value = 0;
        return e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out value) && value >= 0;
    }

    /// <summary>Sorted by offset, the tensors must tile [0, dataLength) with no overlap and no gap.</summary>
    private static void CheckCoverage(string path, SafeTensorInfo[] sorted, long dataLength)
    {
        long pos = 0;
        SafeTensorInfo? last = null; // the tensor whose end is pos
        foreach (SafeTensorInfo t in sorted)
        {
            if (t.DataBegin < pos)
            {
                throw Bad(path, $"tensors '{last!.Name}' [{last.DataBegin},{last.DataEnd}] and '{t.Name}' [{t.DataBegin},{t.DataEnd}] overlap");
            }

            if (t.DataBegin > pos)
            {
                throw Bad(path, $"gap of {t.DataBegin - pos} bytes in the data section at offset {pos} (before '{t.Name}'); " +
                    "tensors must cover the data section exactly");
            }

            if (t.DataEnd > pos || last is null)
            {
                last = t;
            }

            pos = t.DataEnd;
        }

        if (pos != dataLength)
        {
            throw Bad(path, $"the data section has {dataLength - pos} bytes after offset {pos} that no tensor covers " +
                "(tensors must cover the data section exactly)");
        }
    }

    private static EngineException Bad(string path, string problem) => new($"safetensors file '{path}': {problem}");

    private static string OneLine(string s) => s.ReplaceLineEndings(" ");
}

using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Engine.Core;
using Engine.IO;
using Engine.Tests.Support;

namespace Engine.Tests.IO;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir;

    public SafeTensorsTests()
    {
        _dir = Path.Combine(Path.GetTempPath(), "engine-safetensors-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    // ---------------------------------------------------------------- helpers

    private string P(string name) => Path.Combine(_dir, name);

    /// <summary>Writes 8-byte length + header + data by hand; the length field can be overridden.</summary>
    private string Raw(string header, byte[] data, string name = "t.safetensors", ulong? length = null)
    {
        byte[] h = Encoding.UTF8.GetBytes(header);
        return RawBytes(h, data, name, length);
    }

    private string RawBytes(byte[] header, byte[] data, string name = "t.safetensors", ulong? length = null)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, length ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        string path = P(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] U16Bytes(params ushort[] v)
    {
        var b = new byte[v.Length * 2];
        for (int i = 0; i < v.Length; i++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(i * 2), v[i]);
        }

        return b;
    }

    private static byte[] F32Bytes(params float[] v)
    {
        var b = new byte[v.Length * 4];
        for (int i = 0; i < v.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(i * 4), v[i]);
        }

        return b;
    }

    private static byte[] Concat(params byte[][] parts) => [.. parts.SelectMany(p => p)];

    private static void AssertBitwise(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(
                BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                $"element {i}: expected {expected[i]} got {actual[i]}");
        }
    }

    private EngineException OpenFails(string path)
    {
        var ex = Assert.Throws<EngineException>(() => SafeTensorsFile.Open(path).Dispose());
        Assert.Contains(Path.GetFullPath(path), ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', ex.Message);
        return ex;
    }

    private string[] FilesInDir() => [.. Directory.GetFiles(_dir).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];

    // ---------------------------------------------------------------- round trips

    [Fact]
    public void RoundTrip_F32_AllShapes_IncludingScalarAndEmpty()
    {
        int[][] shapes = [[], [0], [0, 4], [3, 0, 2], [7], [2, 3], [1, 1, 5], [4, 3, 2], [1]];
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode + \"quotes\"" };
        var writer = new SafeTensorsWriter(metadata);
        var data = new Dictionary<string, float[]>();
        for (int i = 0; i < shapes.Length; i++)
        {
            long n = shapes[i].Aggregate(1L, (a, d) => a * d);
            float[] values = TestData.Uniform(100 + i, n, 3f);
            string name = $"layer.{i}.weight";
            data[name] = values;
            writer.Add(name, shapes[i], values);
        }

        string path = P("model.safetensors");
        writer.Write(path);

        using SafeTensorsFile f = SafeTensorsFile.Open(path);
        Assert.Equal(shapes.Length, f.Tensors.Count);
        Assert.Equal(0, (f.DataStart - 8) % 8);
        Assert.Equal(metadata, f.Metadata);
        for (int i = 0; i < shapes.Length; i++)
        {
            string name = $"layer.{i}.weight";
            SafeTensorInfo info = f.GetInfo(name);
            Assert.Equal(SafeTensorsDType.F32, info.DType);
            Assert.Equal(shapes[i], info.Shape);
            Assert.Equal(data[name].Length, info.ElementCount);
            AssertBitwise(data[name], f.ReadAsFloat32(name));
            var span = new float[info.ElementCount];
            f.ReadAsFloat32(name, span);
            AssertBitwise(data[name], span);
        }

        Assert.Equal(f.FileLength, f.DataStart + f.Tensors.Sum(t => t.ByteLength));
        Assert.Equal(["model.safetensors"], FilesInDir());
    }

    [Fact]
    public void RoundTrip_F32_SpecialValuesAreBitExact()
    {
        float[] v = [float.NaN, -0f, float.PositiveInfinity, float.NegativeInfinity, float.Epsilon, -float.MaxValue, 1e-40f,
            BitConverter.Int32BitsToSingle(0x7FC0_1234)];
        var w = new SafeTensorsWriter();
        w.Add("v", [v.Length], v);
        string path = P("s.safetensors");
        w.Write(path);
        using SafeTensorsFile f = SafeTensorsFile.Open(path);
        AssertBitwise(v, f.ReadAsFloat32("v"));
        Assert.Empty(f.Metadata);
    }

    [Fact]
    public void Writer_MatchesReferenceImplementationBytes()
    {
        // Test vectors of huggingface/safetensors (tensor.rs: test_serialization,
        // test_serialization_forced_alignement, test_empty).
        byte[] zeroToFive = F32Bytes(0, 1, 2, 3, 4, 5);
        static byte[] Le(ulong n)
        {
            var b = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(b, n);
            return b;
        }

        var w = new SafeTensorsWriter();
        w.Add("attn.0", [1, 2, 3], new float[] { 0, 1, 2, 3, 4, 5 });
        string h1 = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}"; // exactly 64 bytes
        Assert.Equal(Concat(Le(64), Encoding.ASCII.GetBytes(h1), zeroToFive), Serialize(w));

        w = new SafeTensorsWriter();
        w.Add("attn0", [1, 1, 2, 3], new float[] { 0, 1, 2, 3, 4, 5 });
        string h2 = "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ";
        Assert.Equal(Concat(Le(72), Encoding.ASCII.GetBytes(h2), zeroToFive), Serialize(w));

        Assert.Equal(Concat(Le(8), Encoding.ASCII.GetBytes("{}      ")), Serialize(new SafeTensorsWriter()));

        var withMeta = new SafeTensorsWriter(new Dictionary<string, string> { ["framework"] = "pt" });
        Assert.Equal(
            Concat(Le(40), Encoding.ASCII.GetBytes("{\"__metadata__\":{\"framework\":\"pt\"}}     ")),
            Serialize(withMeta));

        static byte[] Serialize(SafeTensorsWriter writer)
        {
            using var ms = new MemoryStream();
            writer.WriteTo(ms);
            return ms.ToArray();
        }
    }

    [Fact]
    public void Writer_OrdersByDtypeAlignmentDescendingThenName()
    {
        var w = new SafeTensorsWriter();
        w.Add("b", [2], new float[] { 1, 2 });
        w.Add("a", [1], new float[] { 3 });
        w.Add("B", [1], new float[] { 4 }); // 'B' (0x42) sorts before 'a' (0x61), as bytes
        w.AddInt64("z", [1], new long[] { 5 });
        w.Add("m", [3], new float[] { 1, 2, 3 }, SafeTensorsDType.BF16);
        w.AddInt32("c", [2], new[] { 6, 7 });
        w.Add("y", [1], new float[] { 0.5f }, SafeTensorsDType.F16);
        string path = P("order.safetensors");
        w.Write(path);

        using SafeTensorsFile f = SafeTensorsFile.Open(path);
        Assert.Equal(["z", "B", "a", "b", "c", "m", "y"], f.Tensors.Select(t => t.Name));
        Assert.Equal(w.DataBytes, f.Tensors.Sum(t => t.ByteLength));
        Assert.Equal(new float[] { 3 }, f.ReadAsFloat32("a"));
        Assert.Equal(new float[] { 4 }, f.ReadAsFloat32("B"));
        Assert.Equal(new float[] { 1, 2 }, f.ReadAsFloat32("b"));
        Assert.Equal(new float[] { 1, 2, 3 }, f.ReadAsFloat32("m"));
        Assert.Equal(new float[] { 0.5f }, f.ReadAsFloat32("y"));
        Assert.Equal(new long[] { 5 }, f.ReadAsInt64("z"));
        Assert.Equal(new[] { 6, 7 }, f.ReadAsInt32("c"));
    }

    // ---------------------------------------------------------------- 16-bit conversions

    [Fact]
    public void Read_F16_KnownBitPatterns()
    {
        ushort[] bits = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x7C00, 0xFC00, 0x8000, 0x3555, 0x0400];
        float[] expected =
        [
            1f, -2f, 65504f, MathF.ScaleB(1f, -24), MathF.ScaleB(1023f, -24), float.PositiveInfinity,
            float.NegativeInfinity, -0f, 0.333251953125f, MathF.ScaleB(1f, -14),
        ];
        string path = Raw($"{{\"h\":{{\"dtype\":\"F16\",\"shape\":[2,5],\"data_offsets\":[0,{bits.Length * 2}]}}}}", U16Bytes(bits));
        using SafeTensorsFile f = SafeTensorsFile.Open(path);
        Assert.Equal([2, 5], f.GetInfo("h").Shape);
        AssertBitwise(expected, f.ReadAsFloat32("h"));

        string nan = Raw("{\"n\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,2]}}", U16Bytes(0x7E00), "nan.safetensors");
        using SafeTensorsFile g = SafeTensorsFile.Open(nan);
        Assert.True(float.IsNaN(g.ReadAsFloat32("n")[0]));
    }

    [Fact]
    public void Read_BF16_KnownBitPatterns()
    {
        ushort[] bits = [0x3F80, 0xC040, 0x4049, 0x0001, 0x7F80, 0xFF80, 0x8000, 0x7F7F, 0x3E00];
        float[] expected =
        [
            1f, -3f, 3.140625f, MathF.ScaleB(1f, -133), float.PositiveInfinity, float.NegativeInfinity, -0f,
            MathF.ScaleB(255f, 120), 0.125f,
        ];
        string path = Raw($"{{\"b\":{{\"dtype\":\"BF16\",\"shape\":[9],\"data_offsets\":[0,{bits.Length * 2}]}}}}", U16Bytes(bits));
        using SafeTensorsFile f = SafeTensorsFile.Open(path);
        AssertBitwise(expected, f.ReadAsFloat32("b"));
    }

    [Fact]
    public void Read_UnalignedOffsetsAndOddHeaderLength()
    {
        // u8 of 1 byte first, so every following tensor starts at an odd offset; header length is odd too.
        var rng = new Random(7);
        ushort[] bf = [.. Enumerable.Range(0, 37).Select(_ => (ushort)rng.Next(0x0000, 0x7F80))];
        float[] f32 = TestData.Uniform(8, 19);
        ushort[] f16 = [0x3C00, 0x4000, 0xBC00, 0x3800, 0x0000];
        long[] i64 = [-1, long.MaxValue, 1L << 40];
        int[] i32 = [-7, int.MinValue, 12345];
        byte[] i64Bytes = new byte[24];
        byte[] i32Bytes = new byte[12];
        for (int i = 0; i < 3; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(i64Bytes.AsSpan(i * 8), i64[i]);
            BinaryPrimitives.WriteInt32LittleEndian(i32Bytes.AsSpan(i * 4), i32[i]);
        }

        byte[] data = Concat([0xAB], U16Bytes(bf), F32Bytes(f32), U16Bytes(f16), i64Bytes, i32Bytes);
        long o0 = 1, o1 = o0 + 74, o2 = o1 + 76, o3 = o2 + 10, o4 = o3 + 24, o5 = o4 + 12;
        string header = "{" +
            "\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}," +
            $"\"bf\":{{\"dtype\":\"BF16\",\"shape\":[37],\"data_offsets\":[{o0},{o1}]}}," +
            $"\"f\":{{\"dtype\":\"F32\",\"shape\":[19],\"data_offsets\":[{o1},{o2}]}}," +
            $"\"h\":{{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[{o2},{o3}]}}," +
            $"\"l\":{{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[{o3},{o4}]}}," +
            $"\"i\":{{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[{o4},{o5}]}}" +
            "}";
        if (header.Length % 2 == 0)
        {
            header += " ";
        }

        Assert.Equal(o5, data.Length);
        string path = Raw(header, data);
        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        Assert.Equal(1, file.DataStart % 2);
        AssertBitwise([.. bf.Select(b => BitConverter.Int32BitsToSingle(b << 16))], file.ReadAsFloat32("bf"));
        AssertBitwise(f32, file.ReadAsFloat32("f"));
        AssertBitwise([1f, 2f, -1f, 0.5f, 0f], file.ReadAsFloat32("h"));
        Assert.Equal(i64, file.ReadAsInt64("l"));
        Assert.Equal(i32, file.ReadAsInt32("i"));
        Assert.Equal([0xAB], file.ReadAsInt32("u"));
        var raw = new byte[74];
        file.ReadBytes("bf", raw);
        Assert.Equal(U16Bytes(bf), raw);
    }

    [Fact]
    public void WriteF16_AndBF16_FromChunkedSource_RoundToNearestEven()
    {
        const int N = 600_000; // > one 1 MiB conversion chunk on both sides
        float[] values = TestData.Uniform(11, N, 4f);
        var offsets = new List<long>();
        var w = new SafeTensorsWriter();
        w.Add("h", [N], (start, dst) =>
        {
            offsets.Add(start);
            values.AsSpan((int)start, dst.Length).CopyTo(dst);
        }, SafeTensorsDType.F16);
        w.Add("b", [600, 1000], values, SafeTensorsDType.BF16);
        string path = P("half.safetensors");
        w.Write(path);

        // The source was asked for consecutive chunks covering the tensor exactly once.
        Assert.Equal(0, offsets[0]);
        Assert.True(offsets.Count > 1);
        Assert.True(offsets.Zip(offsets.Skip(1)).All(p => p.Second > p.First));

        using SafeTensorsFile f = SafeTensorsFile.Open(path);
        Assert.Equal(SafeTensorsDType.F16, f.GetInfo("h").DType);
        Assert.Equal(2L * N, f.GetInfo("h").ByteLength);
        float[] h = f.ReadAsFloat32("h");
        float[] b = f.ReadAsFloat32("b");
        for (int i = 0; i < N; i++)
        {
            Assert.Equal((float)(Half)values[i], h[i]);
            Assert.Equal(Bf16Reference(values[i]), b[i]);
        }
    }

    /// <summary>Round to 8 significant bits, ties to even, in double arithmetic (normal numbers).</summary>
    private static float Bf16Reference(float x)
    {
        if (x == 0)
        {
            return x;
        }

        double ulp = Math.ScaleB(1.0, Math.ILogB((double)x) - 7);
        return (float)(Math.Round(x / ulp, MidpointRounding.ToEven) * ulp);
    }

    [Fact]
    public void WriteBF16_TiesNaNAndOverflow()
    {
        float[] v =
        [
            BitConverter.Int32BitsToSingle(0x3F80_8000), // tie, even below -> 0x3F80
            BitConverter.Int32BitsToSingle(0x3F81_8000), // tie, odd below -> 0x3F82
            BitConverter.Int32BitsToSingle(0x3F80_8001), // above tie -> 0x3F81
            float.MaxValue,                              // rounds to +inf
            float.NaN,
            -0f,
        ];
        var w = new SafeTensorsWriter();
        w.Add("v", [v.Length], v, SafeTensorsDType.BF16);
        string path = P("bf.safetensors");
        w.Write(path);
        using SafeTensorsFile f = SafeTensorsFile.Open(path);
        var raw = new byte[v.Length * 2];
        f.ReadBytes("v", raw);
        ushort[] got = [.. Enumerable.Range(0, v.Length).Select(i => BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(i * 2)))];
        Assert.Equal(0x3F80, got[0]);
        Assert.Equal(0x3F82, got[1]);
        Assert.Equal(0x3F81, got[2]);
        Assert.Equal(0x7F80, got[3]);
        Assert.True((got[4] & 0x7F80) == 0x7F80 && (got[4] & 0x7F) != 0, $"NaN became 0x{got[4]:X4}");
        Assert.Equal(0x8000, got[5]);
    }

    // ---------------------------------------------------------------- other reads

    [Fact]
    public void ReadRange_And_IntegerConversions()
    {
        float[] values = TestData.Uniform(3, 50);
        var w = new SafeTensorsWriter();
        w.Add("f", [5, 10], values);
        w.AddInt64("big", [2], new[] { 1L, 1L << 40 });
        w.AddInt32("i", [3], new[] { -1, 0, 7 });
        string path = P("r.safetensors");
        w.Write(path);
        using SafeTensorsFile f = SafeTensorsFile.Open(path);

        var part = new float[13];
        f.ReadAsFloat32("f", 17, part);
        AssertBitwise(values.AsSpan(17, 13), part);
        var ex = Assert.Throws<EngineException>(() => f.ReadAsFloat32("f", 40, new float[11]));
        Assert.Contains("outside tensor 'f'", ex.Message, StringComparison.Ordinal);

        Assert.Equal(new long[] { -1, 0, 7 }, f.ReadAsInt64("i"));
        ex = Assert.Throws<EngineException>(() => f.ReadAsInt32("big"));
        Assert.Contains("element 1 = 1099511627776 does not fit in int32", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<EngineException>(() => f.ReadAsFloat32("big"));
        Assert.Contains("dtype I64, which cannot be read as float32", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<EngineException>(() => f.ReadAsInt32("f"));
        Assert.Contains("dtype F32, which cannot be read as int32", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<EngineException>(() => f.ReadAsFloat32("f", new float[49]));
        Assert.Contains("has 50 elements but the destination holds 49", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<EngineException>(() => f.GetInfo("nope"));
        Assert.Contains("no tensor named 'nope'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Read_NarrowIntegerTypesWiden()
    {
        byte[] data = Concat([0xFF, 0x80], U16Bytes(0xFFFF, 0x8000), U16Bytes(0xFFFE));
        string path = Raw("{" +
            "\"i8\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}," +
            "\"u8\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}," +
            "\"u16\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[2,6]}," +
            "\"i16\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[6,8]}}", data);
        using SafeTensorsFile f = SafeTensorsFile.Open(path);
        Assert.Equal([-1], f.ReadAsInt32("i8"));
        Assert.Equal([128], f.ReadAsInt32("u8"));
        Assert.Equal([65535, 32768], f.ReadAsInt32("u16"));
        Assert.Equal([-2L], f.ReadAsInt64("i16"));
    }

    [Fact]
    public void Read_F64_AndWideUnsignedRangeChecks()
    {
        var d = new byte[16];
        BinaryPrimitives.WriteDoubleLittleEndian(d, 1.5);
        BinaryPrimitives.WriteDoubleLittleEndian(d.AsSpan(8), -1e300);
        var u = new byte[12];
        BinaryPrimitives.WriteUInt32LittleEndian(u, 7);
        BinaryPrimitives.WriteUInt64LittleEndian(u.AsSpan(4), ulong.MaxValue);
        string path = Raw("{" +
            "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}," +
            "\"u32\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[16,20]}," +
            "\"u64\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[20,28]}}", Concat(d, u));
        using SafeTensorsFile f = SafeTensorsFile.Open(path);
        Assert.Equal([1.5f, float.NegativeInfinity], f.ReadAsFloat32("d"));
        Assert.Equal([7], f.ReadAsInt32("u32"));
        var ex = Assert.Throws<EngineException>(() => f.ReadAsInt64("u64"));
        Assert.Contains("element 0 = 18446744073709551615 does not fit in int64", ex.Message, StringComparison.Ordinal);
    }

    // ---------------------------------------------------------------- bad input

    [Fact]
    public void Bad_FileShorterThan8Bytes()
    {
        string path = P("short.safetensors");
        File.WriteAllBytes(path, [1, 2, 3, 4, 5]);
        Assert.Contains("shorter than 8 bytes", OpenFails(path).Message, StringComparison.Ordinal);
        File.WriteAllBytes(path, []);
        Assert.Contains("shorter than 8 bytes", OpenFails(path).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_HeaderLengthPastEndOfFile()
    {
        string path = Raw("{}", new byte[10], length: 1000);
        Assert.Contains("header length 1000 runs past the end of the file (20 bytes)", OpenFails(path).Message, StringComparison.Ordinal);
        path = Raw("{}", [], length: ulong.MaxValue);
        Assert.Contains("runs past the end of the file", OpenFails(path).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_HeaderLengthAbsurdlyLarge()
    {
        // A sparse file just big enough that the header length fits inside it.
        string path = P("huge.safetensors");
        using (var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
        {
            var prefix = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, 100_000_001);
            fs.Write(prefix);
            fs.SetLength(8 + 100_000_001 + 8);
        }

        Assert.Contains("header length 100000001 is too large", OpenFails(path).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_MissingFile()
    {
        Assert.Contains("does not exist", OpenFails(P("absent.safetensors")).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{not json", 0, "header is not valid JSON")]
    [InlineData("[1,2]", 0, "header is not a JSON object")]
    [InlineData(" {}", 0, "header is not a JSON object")]
    [InlineData("", 0, "header is not a JSON object")]
    [InlineData("{\"a\":5}", 0, "entry 'a' is not an object")]
    [InlineData("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "entry 'a' has no \"dtype\" string")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "entry 'a' has no \"shape\" array")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "entry 'a' has no \"data_offsets\" pair")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "no \"data_offsets\" pair")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "no \"data_offsets\" pair")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape entry that is not an integer (1.5)")]
    [InlineData("{\"a\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a' has unknown or unsupported dtype 'F7'")]
    [InlineData("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown or unsupported dtype 'f32'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-2],\"data_offsets\":[0,0]}}", 0, "tensor 'a' has negative dimension -2")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}", 4, "data_offsets [0,400] out of range of the data section (4 bytes)")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "data_offsets [4,0] with begin after end")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "tensor 'a' size mismatch: data_offsets [0,8] hold 8 bytes but F32 [3] needs 12 bytes")]
    [InlineData("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, "size mismatch")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "tensors 'a' [0,8] and 'b' [4,12] overlap")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8, "overlap")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "gap of 4 bytes in the data section at offset 4 (before 'b')")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap of 4 bytes in the data section at offset 0")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "4 bytes after offset 4 that no tensor covers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate tensor name 'a'")]
    [InlineData("{\"__metadata__\":{\"k\":1}}", 0, "\"__metadata__\" value for 'k' is not a string")]
    [InlineData("{\"__metadata__\":[\"x\"]}", 0, "\"__metadata__\" is not an object of strings")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,0],\"data_offsets\":[0,0]}}", 0, "dimension 4294967296, larger than supported")]
    [InlineData("{\"a\":{\"dtype\":\"F64\",\"shape\":[2147483647,2147483647,2147483647],\"data_offsets\":[0,0]}}", 0, "whose size overflows")]
    public void Bad_Header(string header, int dataBytes, string expected)
    {
        string path = Raw(header, new byte[dataBytes]);
        Assert.Contains(expected, OpenFails(path).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_HeaderNotUtf8()
    {
        byte[] header = [(byte)'{', (byte)'"', 0xFF, 0xFE, (byte)'"', (byte)':', (byte)'1', (byte)'}'];
        Assert.Contains("header is not valid UTF-8", OpenFails(RawBytes(header, [])).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EmptyAndPaddedHeadersAreAccepted()
    {
        using (SafeTensorsFile f = SafeTensorsFile.Open(Raw("{}", [])))
        {
            Assert.Empty(f.Tensors);
        }

        string path = Raw("{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},\"e\":{\"dtype\":\"I64\",\"shape\":[0,3],\"data_offsets\":[4,4]}}     ",
            F32Bytes(2.5f), "padded.safetensors");
        using SafeTensorsFile g = SafeTensorsFile.Open(path);
        Assert.Equal([2.5f], g.ReadAsFloat32("s"));
        Assert.Empty(g.GetInfo("s").Shape);
        Assert.Empty(g.ReadAsInt64("e"));
    }

    [Fact]
    public void Writer_RejectsBadInput()
    {
        var w = new SafeTensorsWriter();
        w.Add("a", [2], new float[] { 1, 2 });
        Assert.Contains("duplicate tensor name 'a'", Assert.Throws<EngineException>(() => w.Add("a", [1], new float[1])).Message, StringComparison.Ordinal);
        Assert.Contains("reserved", Assert.Throws<EngineException>(() => w.Add("__metadata__", [1], new float[1])).Message, StringComparison.Ordinal);
        Assert.Contains("negative dimension -1", Assert.Throws<EngineException>(() => w.Add("n", [-1], new float[1])).Message, StringComparison.Ordinal);
        Assert.Contains("has 6 elements but 5 values", Assert.Throws<EngineException>(() => w.Add("m", [2, 3], new float[5])).Message, StringComparison.Ordinal);
        Assert.Contains("not I32", Assert.Throws<EngineException>(() => w.Add("t", [1], new float[1], SafeTensorsDType.I32)).Message, StringComparison.Ordinal);
        Assert.Equal(1, w.Count);
    }

    // ---------------------------------------------------------------- atomic writes

    [Fact]
    public void AtomicFile_CallbackThrows_PreviousFileIntact_NoTempLeft()
    {
        string path = P("state.json");
        File.WriteAllText(path, "old");
        var ex = Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s =>
        {
            s.Write("partial new content"u8);
            throw new InvalidOperationException("boom");
        }));
        Assert.Equal("boom", ex.Message);
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Equal(["state.json"], FilesInDir());
    }

    [Fact]
    public void AtomicFile_CallbackThrows_NoTargetCreated()
    {
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(P("new.bin"), s =>
        {
            s.Write(new byte[3 << 20]); // beyond the stream buffer, so bytes really reached the temp file
            throw new InvalidOperationException("boom");
        }));
        Assert.Empty(FilesInDir());
    }

    [Fact]
    public void AtomicFile_Success_ReplacesContent()
    {
        string path = P("a.txt");
        File.WriteAllText(path, "old");
        AtomicFile.WriteAllText(path, "new ü");
        Assert.Equal("new ü", File.ReadAllText(path));
        Assert.Equal(Encoding.UTF8.GetBytes("new ü"), File.ReadAllBytes(path)); // no BOM
        AtomicFile.WriteAllBytes(P("b.bin"), [1, 2, 3]);
        Assert.Equal([1, 2, 3], File.ReadAllBytes(P("b.bin")));
        Assert.Equal(["a.txt", "b.bin"], FilesInDir());
    }

    [Fact]
    public void AtomicFile_WriteAll_OneFailure_TouchesNoTarget()
    {
        File.WriteAllText(P("one"), "old1");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.WriteAll(
        [
            (P("one"), s => s.Write("new1"u8)),
            (P("two"), s => s.Write("new2"u8)),
            (P("three"), _ => throw new InvalidOperationException("boom")),
        ]));
        Assert.Equal("old1", File.ReadAllText(P("one")));
        Assert.Equal(["one"], FilesInDir());
    }

    [Fact]
    public void AtomicFile_MissingDirectory_IsEngineException()
    {
        var ex = Assert.Throws<EngineException>(() => AtomicFile.WriteAllText(Path.Combine(_dir, "no", "x.txt"), "x"));
        Assert.Contains("does not exist", ex.Message, StringComparison.Ordinal);
        Assert.Empty(FilesInDir());
    }

    [Fact]
    public void Writer_SourceThrows_PreviousCheckpointIntact()
    {
        string path = P("model.safetensors");
        var good = new SafeTensorsWriter();
        good.Add("w", [3], new float[] { 1, 2, 3 });
        good.Write(path);

        var bad = new SafeTensorsWriter();
        bad.Add("w", [1 << 20], (start, _) =>
        {
            if (start > 0)
            {
                throw new InvalidOperationException("device lost");
            }
        });
        Assert.Throws<InvalidOperationException>(() => bad.Write(path));

        Assert.Equal(["model.safetensors"], FilesInDir());
        using SafeTensorsFile f = SafeTensorsFile.Open(path);
        Assert.Equal(new float[] { 1, 2, 3 }, f.ReadAsFloat32("w"));
    }

    // ---------------------------------------------------------------- sharded checkpoints

    private static (SafeTensorsWriter Writer, Dictionary<string, float[]> Data) ModelLike(int seed)
    {
        var writer = new SafeTensorsWriter(new Dictionary<string, string> { ["format"] = "pt" });
        var data = new Dictionary<string, float[]>();
        (string Name, int[] Shape)[] specs =
        [
            ("model.embed_tokens.weight", [50, 4]),   // 800 bytes: bigger than a shard
            ("model.layers.0.input_layernorm.weight", [4]),
            ("model.layers.0.self_attn.q_proj.weight", [4, 4]),
            ("model.layers.0.self_attn.q_proj.bias", [4]),
            ("model.layers.0.mlp.up_proj.weight", [8, 4]),
            ("model.layers.1.input_layernorm.weight", [4]),
            ("model.layers.1.self_attn.q_proj.weight", [4, 4]),
            ("model.layers.1.mlp.up_proj.weight", [8, 4]),
            ("model.norm.weight", [4]),
            ("scalar", []),
            ("empty", [0, 4]),
        ];
        int i = 0;
        foreach ((string name, int[] shape) in specs)
        {
            float[] v = TestData.Uniform(seed + i++, shape.Aggregate(1L, (a, d) => a * d));
            data[name] = v;
            writer.Add(name, shape, v);
        }

        return (writer, data);
    }

    [Fact]
    public void Sharded_RoundTrip()
    {
        const long MaxShard = 200;
        (SafeTensorsWriter writer, Dictionary<string, float[]> data) = ModelLike(20);
        SafeTensorsCheckpoint.Write(_dir, writer, MaxShard);

        string[] files = FilesInDir();
        Assert.DoesNotContain(SafeTensorsCheckpoint.SingleFileName, files);
        Assert.Contains(SafeTensorsCheckpoint.IndexFileName, files);
        string[] shards = [.. files.Where(f => f.EndsWith(".safetensors", StringComparison.Ordinal))];
        Assert.True(shards.Length >= 3, string.Join(",", files));
        for (int i = 0; i < shards.Length; i++)
        {
            Assert.Equal($"model-{i + 1:D5}-of-{shards.Length:D5}.safetensors", shards[i]);
        }

        using JsonDocument index = JsonDocument.Parse(File.ReadAllBytes(P(SafeTensorsCheckpoint.IndexFileName)));
        Assert.Equal(writer.DataBytes, index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        var weightMap = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        Assert.Equal(data.Keys.Order(StringComparer.Ordinal), weightMap.Keys.Order(StringComparer.Ordinal));

        // Insertion order is kept across shards, and each shard respects the limit unless it holds one tensor.
        int[] shardOfEach = [.. writer.Entries.Select(e => Array.IndexOf(shards, weightMap[e.Name]))];
        Assert.True(shardOfEach.Zip(shardOfEach.Skip(1)).All(p => p.Second >= p.First));
        foreach (string shard in shards)
        {
            using SafeTensorsFile f = SafeTensorsFile.Open(P(shard));
            long bytes = f.Tensors.Sum(t => t.ByteLength);
            Assert.True(bytes <= MaxShard || f.Tensors.Count == 1, $"{shard}: {bytes} bytes in {f.Tensors.Count} tensors");
            Assert.Equal("pt", f.Metadata["format"]);
        }

        using SafeTensorsCheckpoint ckpt = SafeTensorsCheckpoint.Open(_dir);
        Assert.Equal(shards.Length, ckpt.Files.Count);
        Assert.Equal(data.Count, ckpt.Tensors.Count);
        Assert.Equal(writer.DataBytes.ToString(System.Globalization.CultureInfo.InvariantCulture), ckpt.Metadata["total_size"]);
        foreach ((string name, float[] v) in data)
        {
            Assert.True(ckpt.Contains(name));
            AssertBitwise(v, ckpt.ReadAsFloat32(name));
            Assert.Equal(weightMap[name], Path.GetFileName(ckpt.FileOf(name).FilePath));
        }

        // Opening the index file directly gives the same checkpoint.
        using SafeTensorsCheckpoint viaIndex = SafeTensorsCheckpoint.Open(P(SafeTensorsCheckpoint.IndexFileName));
        Assert.Equal(ckpt.Tensors.Select(t => t.Name), viaIndex.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void Sharded_WhenEverythingFits_WritesSingleFile_AndRewritesCleanUp()
    {
        (SafeTensorsWriter writer, Dictionary<string, float[]> data) = ModelLike(30);

        // Sharded first (3+ shards) ...
        SafeTensorsCheckpoint.Write(_dir, writer, 200);
        Assert.True(FilesInDir().Length >= 4);

        // ... then fewer shards: the old shards that are not overwritten are removed.
        SafeTensorsCheckpoint.Write(_dir, writer, 1000);
        string[] files = FilesInDir();
        Assert.Equal(
            ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", SafeTensorsCheckpoint.IndexFileName],
            files);

        // ... then everything fits: single file, index and shards removed.
        SafeTensorsCheckpoint.Write(_dir, writer);
        Assert.Equal([SafeTensorsCheckpoint.SingleFileName], FilesInDir());
        using (SafeTensorsCheckpoint single = SafeTensorsCheckpoint.Open(_dir))
        {
            Assert.Null(single.IndexPath);
            Assert.Equal("pt", single.Metadata["format"]);
            foreach ((string name, float[] v) in data)
            {
                AssertBitwise(v, single.ReadAsFloat32(name));
            }
        }

        // ... and back to sharded: the single file is removed.
        SafeTensorsCheckpoint.Write(_dir, writer, 1000);
        Assert.DoesNotContain(SafeTensorsCheckpoint.SingleFileName, FilesInDir());
        using SafeTensorsCheckpoint again = SafeTensorsCheckpoint.Open(_dir);
        Assert.Equal(data.Count, again.Tensors.Count);
    }

    [Fact]
    public void Sharded_WriteFailure_LeavesPreviousCheckpointAndNoTemps()
    {
        (SafeTensorsWriter writer, Dictionary<string, float[]> data) = ModelLike(40);
        SafeTensorsCheckpoint.Write(_dir, writer, 200);
        string[] before = FilesInDir();
        Dictionary<string, byte[]> contents = before.ToDictionary(f => f, f => File.ReadAllBytes(P(f)));

        var bad = new SafeTensorsWriter();
        bad.Add("a", [100], new float[100]);
        bad.Add("b", [100], (_, _) => throw new InvalidOperationException("boom")); // second shard fails
        Assert.Throws<InvalidOperationException>(() => SafeTensorsCheckpoint.Write(_dir, bad, 400));

        Assert.Equal(before, FilesInDir());
        foreach (string f in before)
        {
            Assert.Equal(contents[f], File.ReadAllBytes(P(f)));
        }

        using SafeTensorsCheckpoint ckpt = SafeTensorsCheckpoint.Open(_dir);
        Assert.Equal(data.Count, ckpt.Tensors.Count);
    }

    private void WriteShard(string file, params string[] names)
    {
        var w = new SafeTensorsWriter();
        foreach (string n in names)
        {
            w.Add(n, [2], new float[] { 1, 2 });
        }

        w.Write(P(file));
    }

    private void WriteIndex(string json) => File.WriteAllText(P(SafeTensorsCheckpoint.IndexFileName), json);

    private EngineException CheckpointFails()
    {
        var ex = Assert.Throws<EngineException>(() => SafeTensorsCheckpoint.Open(_dir).Dispose());
        Assert.DoesNotContain('\n', ex.Message);
        return ex;
    }

    [Fact]
    public void Index_NamingMissingShard_IsRejected()
    {
        WriteShard("s1.safetensors", "a");
        WriteIndex("{\"metadata\":{},\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
        EngineException ex = CheckpointFails();
        Assert.Contains("names shard 's2.safetensors', which does not exist", ex.Message, StringComparison.Ordinal);
        Assert.Contains(SafeTensorsCheckpoint.IndexFileName, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Index_NameNotInItsShard_IsRejected()
    {
        WriteShard("s1.safetensors", "a");
        WriteShard("s2.safetensors", "b");
        WriteIndex("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}}");
        Assert.Contains("maps 'b' to shard 's1.safetensors', which has no such tensor", CheckpointFails().Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Index_ShardHoldingUnlistedTensor_IsRejected()
    {
        WriteShard("s1.safetensors", "a", "extra");
        WriteIndex("{\"weight_map\":{\"a\":\"s1.safetensors\"}}");
        Assert.Contains("holds tensor 'extra', which the weight_map does not assign to it", CheckpointFails().Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"weight_map\":{\"a\":\"../s1.safetensors\"}}", "is not a plain file name")]
    [InlineData("{\"weight_map\":{\"a\":\"/tmp/s1.safetensors\"}}", "is not a plain file name")]
    [InlineData("{\"weight_map\":{\"a\":1}}", "entry for 'a' is not a file name string")]
    [InlineData("{\"weight_map\":{\"a\":\"s1.safetensors\",\"a\":\"s1.safetensors\"}}", "invalid JSON (Duplicate property 'a'")]
    [InlineData("{\"metadata\":{}}", "no \"weight_map\" object")]
    [InlineData("{\"metadata\":3,\"weight_map\":{}}", "\"metadata\" is not an object")]
    [InlineData("[]", "not a JSON object")]
    [InlineData("{\"weight_map\":", "invalid JSON")]
    public void Index_Malformed_IsRejected(string json, string expected)
    {
        WriteShard("s1.safetensors", "a");
        WriteIndex(json);
        Assert.Contains(expected, CheckpointFails().Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Index_BadShardFile_ReportsTheShard()
    {
        File.WriteAllBytes(P("s1.safetensors"), [1, 2, 3]);
        WriteIndex("{\"weight_map\":{\"a\":\"s1.safetensors\"}}");
        EngineException ex = CheckpointFails();
        Assert.Contains("s1.safetensors", ex.Message, StringComparison.Ordinal);
        Assert.Contains("shorter than 8 bytes", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Directory_Ambiguous_Or_Empty_IsRejected()
    {
        Assert.Contains("holds neither model.safetensors nor model.safetensors.index.json", CheckpointFails().Message, StringComparison.Ordinal);
        WriteShard(SafeTensorsCheckpoint.SingleFileName, "a");
        WriteIndex("{\"weight_map\":{\"a\":\"model.safetensors\"}}");
        Assert.Contains("holds both", CheckpointFails().Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", Assert.Throws<EngineException>(() => SafeTensorsCheckpoint.Open(P("nowhere"))).Message, StringComparison.Ordinal);

        File.Delete(P(SafeTensorsCheckpoint.IndexFileName));
        using SafeTensorsCheckpoint viaFile = SafeTensorsCheckpoint.Open(P(SafeTensorsCheckpoint.SingleFileName));
        Assert.Equal(["a"], viaFile.Tensors.Select(t => t.Name));
        Assert.Contains("no tensor named 'b'", Assert.Throws<EngineException>(() => viaFile.ReadAsFloat32("b")).Message, StringComparison.Ordinal);
    }
}

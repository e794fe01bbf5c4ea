using System.Runtime.Intrinsics;
using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;

namespace Engine.Tests.Kernels;

/// <summary>
/// Paged KV cache on the CPU: KvCacheWrite places each row's keys and values in its slot, and
/// PagedAttention gives, for a query at position t, the very bits the training AttentionForward gives
/// that query in the full causal sequence, whether the rows come all at once (prefill), one per
/// sequence (decode) or mixed and shuffled, over non-contiguous blocks of several sizes.
/// </summary>
public sealed class KvCacheTests : IDisposable
{
    private const int Layers = 2;
    private const int Layer = 1;

    private readonly CpuAccelerator cpu = TestDevices.Cpu();

    public void Dispose() => cpu.Dispose();

    public enum Mode
    {
        Prefill,
        Decode,
        Mixed,
    }

    /// <summary>
    /// B, T, Hq, Hkv, D, block size: MHA and GQA, D = 8 / 33 / 64, T up to 150, blocks of 16, 5 and 64
    /// positions (with D = 64 and blocks of 16 or 64 the keys are read in the blocks, else gathered).
    /// </summary>
    public static TheoryData<int, int, int, int, int, int> Shapes => new()
    {
        { 2, 150, 4, 2, 8, 16 },
        { 3, 70, 6, 1, 33, 5 },
        { 2, 130, 2, 2, 64, 64 },
        { 1, 67, 8, 2, 64, 16 },
        { 2, 1, 2, 1, 8, 5 },
        { 3, 40, 3, 3, 33, 64 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void PagedAttention_IsBitIdenticalToTrainingForward(int b, int t, int hq, int hkv, int d, int blockSize)
    {
        var s = new Setup(b, t, hq, hkv, d, blockSize, seed: b + t + d + blockSize);
        float[] qkv = TestData.Uniform(100 + t + d, s.QkvLength, 1.5f);
        float[] training = TrainingForward(cpu, qkv, s);
        foreach (Mode mode in Enum.GetValues<Mode>())
        {
            float[] paged = PagedForward(cpu, qkv, s, mode, seed: 7);
            AssertBitwise(training, paged, $"{mode}");
        }
    }

    [Theory]
    [InlineData(2, 150, 4, 2, 8, 16)]
    [InlineData(3, 70, 6, 1, 33, 5)]
    [InlineData(1, 130, 2, 2, 64, 64)]
    public void PagedAttention_MatchesDoubleReference(int b, int t, int hq, int hkv, int d, int blockSize)
    {
        var s = new Setup(b, t, hq, hkv, d, blockSize, seed: 3);
        float[] qkv = TestData.Uniform(200 + t, s.QkvLength, 1.5f);
        double[] expected = Reference(qkv, s);
        Compare.Close(expected, PagedForward(cpu, qkv, s, Mode.Decode, seed: 1), 2e-5, "decode");
        Compare.Close(expected, PagedForward(cpu, qkv, s, Mode.Mixed, seed: 2), 2e-5, "mixed");
    }

    [Fact]
    public void PagedAttention_OneAndTwoThreads_AreBitIdentical()
    {
        var s = new Setup(3, 140, 8, 2, 40, 16, seed: 5);
        float[] qkv = TestData.Uniform(301, s.QkvLength, 1.5f);
        using CpuAccelerator one = TestDevices.Cpu(1);
        using CpuAccelerator two = TestDevices.Cpu(2);
        foreach (Mode mode in Enum.GetValues<Mode>())
        {
            AssertBitwise(PagedForward(one, qkv, s, mode, seed: 9), PagedForward(two, qkv, s, mode, seed: 9), $"{mode}");
        }
    }

    /// <summary>
    /// The AVX-512, AVX2 and scalar paths each match the training forward of the same width bit for bit
    /// (whatever this machine prefers), over a cache written once for all positions.
    /// </summary>
    [Theory]
    [InlineData(512, 20, 5)]    // keys gathered from the blocks
    [InlineData(256, 20, 5)]
    [InlineData(1, 20, 5)]
    [InlineData(512, 16, 8)]    // keys read in the blocks
    [InlineData(256, 16, 8)]
    [InlineData(1, 16, 8)]
    public unsafe void EveryVectorWidth_IsBitIdenticalToTrainingForward(int width, int d, int blockSize)
    {
        if (width == 512 && !Vector512.IsHardwareAccelerated)
        {
            width = 256;
        }

        var s = new Setup(2, 75, 4, 2, d, blockSize, seed: 11);
        float[] qkv = TestData.Uniform(401, s.QkvLength, 1.5f);
        float[] cache = WriteAll(cpu, qkv, s);
        using var pool = new CpuThreadPool(2);
        var scratch = new AttentionScratch(pool.ThreadCount);
        scratch.Ensure(CpuAttention.ScratchFloats(s.D));
        var plan = new PagedAttentionPlan();
        float[] training = new float[s.OutLength], lse = new float[s.B * s.Hq * s.T], paged = new float[s.OutLength];

        // Rows: every position of every sequence, sequence-major (prefill), then one row per call (decode).
        int n = s.B * s.T;
        int[] rowSeq = new int[n], rowPos = new int[n];
        for (int i = 0; i < n; i++)
        {
            rowSeq[i] = i / s.T;
            rowPos[i] = i % s.T;
        }

        fixed (float* pq = qkv, pc = cache, pt = training, pl = lse, pp = paged)
        fixed (int* tables = s.Tables, seq = rowSeq, pos = rowPos)
        {
            var p = new WidthRun(pool, scratch, plan, s, pq, pc, pt, pl, pp, tables, seq, pos);
            p.Training(width);
            p.Paged(width, 0, n);
            AssertBitwise(training, paged, $"prefill ({width})");
            Array.Fill(paged, float.NaN);
            for (int i = 0; i < n; i++)
            {
                p.Paged(width, i, 1);
            }

            AssertBitwise(training, paged, $"decode ({width})");
        }
    }

    /// <summary>The kernels of one vector width on raw pointers (rows: seq/pos, outputs in row order).</summary>
    private readonly unsafe struct WidthRun(CpuThreadPool pool, AttentionScratch scratch, PagedAttentionPlan plan, Setup s,
        float* qkv, float* cache, float* training, float* lse, float* paged, int* tables, int* seq, int* pos)
    {
        public void Training(int width)
        {
            switch (width)
            {
                case 512:
                    CpuAttention.Forward<Vector512<float>, AttentionSimd.V512>(pool, scratch, training, lse, qkv, s.B, s.T, s.Hq, s.Hkv, s.D, s.Scale);
                    break;
                case 256:
                    CpuAttention.Forward<Vector256<float>, AttentionSimd.V256>(pool, scratch, training, lse, qkv, s.B, s.T, s.Hq, s.Hkv, s.D, s.Scale);
                    break;
                default:
                    CpuAttention.Forward<float, AttentionSimd.Scalar>(pool, scratch, training, lse, qkv, s.B, s.T, s.Hq, s.Hkv, s.D, s.Scale);
                    break;
            }
        }

        public void Paged(int width, int first, int count)
        {
            KvCacheShape shape = s.Shape;
            plan.Build(tables, s.B, seq + first, pos + first, count, s.MaxBlocks, s.Hq, shape);
            float* o = paged + ((long)first * s.Hq * s.D), q = qkv + ((long)first * s.Stride);
            switch (width)
            {
                case 512:
                    CpuPagedAttention.Forward<Vector512<float>, AttentionSimd.V512>(pool, scratch, plan, o, q, cache, tables, seq + first, pos + first,
                        s.MaxBlocks, s.Hq, Layer, shape, s.Scale);
                    break;
                case 256:
                    CpuPagedAttention.Forward<Vector256<float>, AttentionSimd.V256>(pool, scratch, plan, o, q, cache, tables, seq + first, pos + first,
                        s.MaxBlocks, s.Hq, Layer, shape, s.Scale);
                    break;
                default:
                    CpuPagedAttention.Forward<float, AttentionSimd.Scalar>(pool, scratch, plan, o, q, cache, tables, seq + first, pos + first,
                        s.MaxBlocks, s.Hq, Layer, shape, s.Scale);
                    break;
            }
        }
    }

    /// <summary>
    /// A zero output whose sign would depend on keys after the query: the second key tile's huge
    /// score (exp(-353) = 0) scales a negative accumulator to -0, and the training forward adds
    /// 0 * v of the later keys of the query's 4-row block (+0 for positive v), which a decode step
    /// does not have. Both kernels write zeros as +0, so the bits still agree.
    /// </summary>
    [Fact]
    public void PagedAttention_ZeroSignDoesNotDependOnLaterKeys()
    {
        var s = new Setup(1, 68, 1, 1, 8, 16, seed: 13);
        float[] qkv = new float[s.QkvLength];
        var rng = new Random(17);
        for (int t = 0; t < s.T; t++)
        {
            float[] row = new float[s.Stride];
            for (int c = 1; c < s.D; c++)
            {
                row[c] = (float)(rng.NextDouble() - 0.5);                       // q: only dim 0 matters for the scores below
                row[s.D + c] = (float)(rng.NextDouble() - 0.5);                 // k
            }

            row[0] = t == 64 ? 100f : 0f;                                       // q_64 = (100, 0 ...)
            row[s.D] = t == 64 ? 10f : 0f;                                      // k_64 = (10, ...): score 1000 / sqrt(8)
            for (int c = 0; c < s.D; c++)
            {
                row[(2 * s.D) + c] = t < 64 ? -1f - (float)rng.NextDouble()     // v < 0 before the jump
                    : t == 64 ? -0f : 1f + (float)rng.NextDouble();              // v_64 = -0, later v > 0
            }

            Array.Copy(row, 0, qkv, t * s.Stride, s.Stride);
        }

        float[] training = TrainingForward(cpu, qkv, s);
        float[] decode = PagedForward(cpu, qkv, s, Mode.Decode, seed: 1);
        var row64 = training.AsSpan(64 * s.D, s.D).ToArray();
        Assert.All(row64, x => Assert.Equal(0, BitConverter.SingleToInt32Bits(x)));
        AssertBitwise(training, decode, "decode");
    }

    [Fact]
    public void Write_PlacesKeysAndValuesInTheirSlotsOnly()
    {
        // Enough rows for the parallel path: 700 rows x 2 x 3 heads x 17 floats.
        const int n = 700, hq = 6, hkv = 3, d = 17, bs = 7, blocks = 110;
        var shape = new KvCacheShape(blocks, Layers, hkv, d, bs);
        int stride = (hq + (2 * hkv)) * d;
        float[] qkv = TestData.Uniform(501, (long)n * stride);
        int[] slots = Shuffled(new Random(502), blocks * bs).AsSpan(0, n).ToArray();
        using var cache = cpu.Allocate(shape.Length);
        cpu.Fill(cache.All, float.NaN);
        using var q = cpu.Put(qkv);
        using var sl = cpu.Put(slots);
        cpu.KvCacheWrite(cache.All, q.All, sl.All, n, hq, Layer, shape);
        float[] got = cpu.Get(cache);

        var expected = new float[shape.Length];
        Array.Fill(expected, float.NaN);
        for (int i = 0; i < n; i++)
        {
            int block = slots[i] / bs, offset = slots[i] % bs;
            for (int kv = 0; kv < 2; kv++)
            {
                for (int g = 0; g < hkv; g++)
                {
                    long dst = ((((((long)block * Layers) + Layer) * 2 + kv) * hkv + g) * bs + offset) * d;
                    Array.Copy(qkv, (i * stride) + ((hq + (kv * hkv) + g) * d), expected, dst, d);
                }
            }
        }

        AssertBitwise(expected, got, "cache");
    }

    [Fact]
    public void Write_SmallBatchOnOneThread_MatchesManyThreads()
    {
        const int n = 3, hq = 4, hkv = 2, d = 9, bs = 4, blocks = 5;
        var shape = new KvCacheShape(blocks, Layers, hkv, d, bs);
        float[] qkv = TestData.Uniform(511, (long)n * (hq + (2 * hkv)) * d);
        int[] slots = [19, 0, 6];
        using CpuAccelerator one = TestDevices.Cpu(1);
        float[] a = WriteSlots(cpu, shape, qkv, slots, hq), b = WriteSlots(one, shape, qkv, slots, hq);
        AssertBitwise(a, b, "cache");
        Assert.Equal(qkv[(hq * d) + 0], a[(((((4L * Layers) + Layer) * 2) * hkv * bs) + 3) * d]);  // row 0, key head 0 -> block 4, offset 3
    }

    [Fact]
    public void InvalidIndices_Throw()
    {
        var s = new Setup(1, 10, 2, 1, 8, 4, seed: 1);
        float[] qkv = TestData.Uniform(601, s.QkvLength);
        using var cache = cpu.Allocate(s.Shape.Length);
        using var q = cpu.Put(qkv);
        using var o = cpu.Allocate(s.OutLength);
        using var badSlot = cpu.Put(new[] { s.Shape.Blocks * s.BlockSize });
        Assert.Throws<ArgumentOutOfRangeException>(() => cpu.KvCacheWrite(cache.All, q.All, badSlot.All, 1, s.Hq, Layer, s.Shape));

        using var tables = cpu.Put(s.Tables);
        using var seq0 = cpu.Put(new[] { 0 });
        using var seq1 = cpu.Put(new[] { 1 });
        using var pos3 = cpu.Put(new[] { 3 });
        using var posFar = cpu.Put(new[] { s.MaxBlocks * s.BlockSize });
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            cpu.PagedAttention(o.All, q.All, cache.All, tables.All, seq1.All, pos3.All, 1, s.MaxBlocks, s.Hq, Layer, s.Shape, s.Scale));
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            cpu.PagedAttention(o.All, q.All, cache.All, tables.All, seq0.All, posFar.All, 1, s.MaxBlocks, s.Hq, Layer, s.Shape, s.Scale));
        int[] badTable = (int[])s.Tables.Clone();
        badTable[0] = -1;
        using var bad = cpu.Put(badTable);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            cpu.PagedAttention(o.All, q.All, cache.All, bad.All, seq0.All, pos3.All, 1, s.MaxBlocks, s.Hq, Layer, s.Shape, s.Scale));
    }

    // ---- helpers --------------------------------------------------------------------------------

    /// <summary>
    /// B sequences of T tokens over a pool with spare blocks, each sequence's blocks drawn from a
    /// shuffled list (so neither contiguous nor ordered); table columns past a sequence's blocks hold -1.
    /// </summary>
    private sealed class Setup
    {
        public Setup(int b, int t, int hq, int hkv, int d, int blockSize, int seed)
        {
            B = b;
            T = t;
            Hq = hq;
            Hkv = hkv;
            D = d;
            BlockSize = blockSize;
            int perSeq = (t + blockSize - 1) / blockSize;
            MaxBlocks = perSeq + 1;
            int blocks = (b * perSeq) + 3;
            Shape = new KvCacheShape(blocks, Layers, hkv, d, blockSize);
            int[] order = Shuffled(new Random(seed), blocks);
            Tables = new int[b * MaxBlocks];
            Array.Fill(Tables, -1);
            for (int i = 0; i < b * perSeq; i++)
            {
                Tables[(i / perSeq * MaxBlocks) + (i % perSeq)] = order[i];
            }
        }

        public int B { get; }

        public int T { get; }

        public int Hq { get; }

        public int Hkv { get; }

        public int D { get; }

        public int BlockSize { get; }

        public int MaxBlocks { get; }

        public int[] Tables { get; }

        public KvCacheShape Shape { get; }

        public int Stride => (Hq + (2 * Hkv)) * D;

        public int QkvLength => B * T * Stride;

        public int OutLength => B * T * Hq * D;

        public float Scale => 1f / MathF.Sqrt(D);

        public int Slot(int seq, int pos) => (Tables[(seq * MaxBlocks) + (pos / BlockSize)] * BlockSize) + (pos % BlockSize);
    }

    private static int[] Shuffled(Random rng, int n)
    {
        int[] a = Enumerable.Range(0, n).ToArray();
        rng.Shuffle(a);
        return a;
    }

    private static float[] TrainingForward(CpuAccelerator acc, float[] qkv, Setup s)
    {
        using var q = acc.Put(qkv);
        using var o = acc.Allocate(s.OutLength);
        using var l = acc.Allocate(s.B * s.Hq * s.T);
        acc.AttentionForward(o.All, l.All, q.All, s.B, s.T, s.Hq, s.Hkv, s.D, s.Scale);
        return acc.Get(o);
    }

    /// <summary>
    /// Runs the rows (sequence b, position t) of <paramref name="qkv"/> through KvCacheWrite then
    /// PagedAttention, call by call, over a NaN-filled cache (so reading a slot not yet written would
    /// show), and returns the outputs in training row order [B*T, Hq*D].
    /// </summary>
    private static float[] PagedForward(CpuAccelerator acc, float[] qkv, Setup s, Mode mode, int seed)
    {
        var calls = new List<List<(int Seq, int Pos)>>();
        switch (mode)
        {
            case Mode.Prefill:
                calls.Add([.. Enumerable.Range(0, s.B * s.T).Select(i => (i / s.T, i % s.T))]);
                break;
            case Mode.Decode:
                for (int t = 0; t < s.T; t++)
                {
                    calls.Add([.. Enumerable.Range(0, s.B).Select(b => (b, t))]);
                }

                break;
            default:
                // Each call takes the next 0..9 positions of every sequence, all shuffled together
                // (rows of one sequence end up adjacent and out of order, or split by other sequences).
                var rng = new Random(seed);
                int[] next = new int[s.B];
                while (next.Any(p => p < s.T))
                {
                    var rows = new List<(int, int)>();
                    for (int b = 0; b < s.B; b++)
                    {
                        int take = Math.Min(s.T - next[b], rng.Next(0, 10));
                        for (int k = 0; k < take; k++)
                        {
                            rows.Add((b, next[b]++));
                        }
                    }

                    if (rows.Count > 0)
                    {
                        (int, int)[] shuffled = [.. rows];
                        rng.Shuffle(shuffled);
                        calls.Add([.. shuffled]);
                    }
                }

                break;
        }

        float[] result = new float[s.OutLength];
        Array.Fill(result, float.NaN);
        using var cache = acc.Allocate(s.Shape.Length);
        acc.Fill(cache.All, float.NaN);
        using var tables = acc.Put(s.Tables);
        foreach (List<(int Seq, int Pos)> call in calls)
        {
            int n = call.Count;
            float[] rows = new float[n * s.Stride];
            int[] slots = new int[n], seq = new int[n], pos = new int[n];
            for (int i = 0; i < n; i++)
            {
                (int b, int t) = call[i];
                Array.Copy(qkv, ((b * s.T) + t) * s.Stride, rows, i * s.Stride, s.Stride);
                slots[i] = s.Slot(b, t);
                seq[i] = b;
                pos[i] = t;
            }

            using var q = acc.Put(rows);
            using var sl = acc.Put(slots);
            using var sq = acc.Put(seq);
            using var ps = acc.Put(pos);
            using var o = acc.Allocate((long)n * s.Hq * s.D);
            acc.Fill(o.All, float.NaN);
            acc.KvCacheWrite(cache.All, q.All, sl.All, n, s.Hq, Layer, s.Shape);
            acc.PagedAttention(o.All, q.All, cache.All, tables.All, sq.All, ps.All, n, s.MaxBlocks, s.Hq, Layer, s.Shape, s.Scale);
            float[] output = acc.Get(o);
            for (int i = 0; i < n; i++)
            {
                (int b, int t) = call[i];
                Array.Copy(output, i * s.Hq * s.D, result, ((b * s.T) + t) * s.Hq * s.D, s.Hq * s.D);
            }
        }

        return result;
    }

    /// <summary>A cache holding the keys and values of every position of every sequence.</summary>
    private static float[] WriteAll(CpuAccelerator acc, float[] qkv, Setup s)
    {
        int n = s.B * s.T;
        int[] slots = new int[n];
        for (int i = 0; i < n; i++)
        {
            slots[i] = s.Slot(i / s.T, i % s.T);
        }

        return WriteSlots(acc, s.Shape, qkv, slots, s.Hq);
    }

    private static float[] WriteSlots(CpuAccelerator acc, KvCacheShape shape, float[] qkv, int[] slots, int hq)
    {
        using var cache = acc.Allocate(shape.Length);
        acc.Fill(cache.All, float.NaN);
        using var q = acc.Put(qkv);
        using var sl = acc.Put(slots);
        acc.KvCacheWrite(cache.All, q.All, sl.All, slots.Length, hq, Layer, shape);
        return acc.Get(cache);
    }

    /// <summary>Causal GQA attention in double with a materialised softmax, output [B*T, Hq*D].</summary>
    private static double[] Reference(float[] qkv, Setup s)
    {
        int d = s.D, rep = s.Hq / s.Hkv;
        var output = new double[s.OutLength];
        var p = new double[s.T];
        for (int b = 0; b < s.B; b++)
        {
            for (int h = 0; h < s.Hq; h++)
            {
                int qOff = h * d, kOff = (s.Hq + (h / rep)) * d, vOff = (s.Hq + s.Hkv + (h / rep)) * d;
                for (int i = 0; i < s.T; i++)
                {
                    int qRow = ((b * s.T) + i) * s.Stride;
                    double max = double.NegativeInfinity, sum = 0;
                    for (int j = 0; j <= i; j++)
                    {
                        int kRow = ((b * s.T) + j) * s.Stride;
                        double dot = 0;
                        for (int c = 0; c < d; c++)
                        {
                            dot += (double)qkv[qRow + qOff + c] * qkv[kRow + kOff + c];
                        }

                        p[j] = dot * s.Scale;
                        max = Math.Max(max, p[j]);
                    }

                    for (int j = 0; j <= i; j++)
                    {
                        p[j] = Math.Exp(p[j] - max);
                        sum += p[j];
                    }

                    for (int c = 0; c < d; c++)
                    {
                        double acc = 0;
                        for (int j = 0; j <= i; j++)
                        {
                            acc += p[j] * qkv[((b * s.T) + j) * s.Stride + vOff + c];
                        }

                        output[((((b * s.T) + i) * s.Hq) + h) * d + c] = acc / sum;
                    }
                }
            }
        }

        return output;
    }

    private static void AssertBitwise(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            int e = BitConverter.SingleToInt32Bits(expected[i]), a = BitConverter.SingleToInt32Bits(actual[i]);
            Assert.True(e == a, $"{what}: element {i} is {actual[i]:R} (0x{a:X8}), expected {expected[i]:R} (0x{e:X8})");
        }
    }
}

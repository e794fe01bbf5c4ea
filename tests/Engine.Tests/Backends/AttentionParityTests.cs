using Engine.Core;
using Engine.Tools;
using Engine.Tests.Support;
using Xunit.Abstractions;

namespace Engine.Tests.Backends;

/// <summary>Causal attention forward/backward, the paged KV cache and paged attention: every device vs the CPU backend.</summary>
public sealed class AttentionParityTests(BackendFixture fx, ITestOutputHelper output) : IClassFixture<BackendFixture>
{
    /// <summary>(B, T, Hq, Hkv, D): one token; odd T and D with GQA; several 32-key tiles with ragged ends.</summary>
    private static readonly (int B, int T, int Hq, int Hkv, int D)[] Shapes =
        [(1, 1, 1, 1, 8), (2, 7, 2, 1, 6), (1, 45, 4, 2, 8), (2, 70, 2, 2, 6)];

    [Theory]
    [BackendDevices]
    public void Attention_forward_matches_the_cpu(string device)
    {
        foreach (var (b, t, hq, hkv, d) in Shapes)
        {
            long rows = (long)b * t;
            float scale = 1f / MathF.Sqrt(d);
            var ops = new Operands().Zeros("out", rows * hq * d).Zeros("lse", rows * hq).F("qkv", TestData.Uniform(1, rows * (hq + 2 * hkv) * d, 2f));
            Parity.Check(fx, device, output, $"AttentionForward b{b} t{t} h{hq}/{hkv} d{d}", ops,
                (acc, v) => acc.AttentionForward(v["out"], v["lse"], v["qkv"], b, t, hq, hkv, d, scale), ("out", 1e-5), ("lse", 1e-6));
        }
    }

    [Theory]
    [BackendDevices]
    public void Attention_backward_matches_the_cpu(string device)
    {
        foreach (var (b, t, hq, hkv, d) in Shapes)
        {
            long rows = (long)b * t;
            float scale = 1f / MathF.Sqrt(d);
            float[] qkv = TestData.Uniform(2, rows * (hq + 2 * hkv) * d, 2f);

            // The forward's output and lse (from the CPU) are inputs of the backward on both backends.
            var forward = new Operands().Zeros("out", rows * hq * d).Zeros("lse", rows * hq).F("qkv", qkv)
                .Run(fx.Cpu, (acc, v) => acc.AttentionForward(v["out"], v["lse"], v["qkv"], b, t, hq, hkv, d, scale));
            var ops = new Operands().F("dqkv", TestData.Uniform(3, qkv.Length)).F("dout", TestData.Uniform(4, rows * hq * d))
                .F("qkv", qkv).F("out", forward["out"]).F("lse", forward["lse"]);
            Parity.Check(fx, device, output, $"AttentionBackward b{b} t{t} h{hq}/{hkv} d{d}", ops,
                (acc, v) => acc.AttentionBackward(v["dqkv"], v["dout"], v["qkv"], v["out"], v["lse"], b, t, hq, hkv, d, scale),
                ("dqkv", 1e-5));
        }
    }

    [Theory]
    [BackendDevices]
    public void Kv_cache_write_and_paged_attention_match_the_cpu(string device)
    {
        // Two geometries: small blocks (keys of a row spread over 3 blocks), and long sequences
        // (more keys than one tile of the device kernels).
        foreach (var (blockSize, maxBlocks, hq, hkv, d, positions) in new[]
                 {
                     (4, 3, 4, 2, 8, new[] { 0, 11, 6, 1, 10, 5 }),
                     (16, 6, 2, 1, 12, new[] { 95, 0, 70, 65, 33 }),
                 })
        {
            const int layers = 2, layer = 1, sequences = 2;
            int n = positions.Length;  // row i belongs to sequence i % 2; positions are distinct within a sequence
            var shape = new KvCacheShape(sequences * maxBlocks + 1, layers, hkv, d, blockSize);
            float scale = 1f / MathF.Sqrt(d);

            // Block tables: sequence 0 takes blocks 1, 3, 5, ...; sequence 1 takes 2, 4, 6, ... (block 0 unused).
            var tables = new int[sequences * maxBlocks];
            for (int s = 0; s < sequences; s++)
            {
                for (int k = 0; k < maxBlocks; k++)
                {
                    tables[s * maxBlocks + k] = 1 + s + (2 * k);
                }
            }

            int[] rowSeq = new int[n];
            int[] rowPos = positions;
            int[] slots = new int[n];
            for (int i = 0; i < n; i++)
            {
                rowSeq[i] = i % sequences;
                slots[i] = (tables[rowSeq[i] * maxBlocks + (rowPos[i] / blockSize)] * blockSize) + (rowPos[i] % blockSize);
            }

            var ops = new Operands()
                .F("cache", TestData.Uniform(5, shape.Length)).F("qkv", TestData.Uniform(6, (long)n * (hq + 2 * hkv) * d, 2f))
                .I("slots", slots).I("tables", tables).I("rowSeq", rowSeq).I("rowPos", rowPos).Zeros("out", (long)n * hq * d);
            Parity.Check(fx, device, output, $"KvCacheWrite+PagedAttention bs{blockSize} d{d}", ops, (acc, v) =>
            {
                acc.KvCacheWrite(v["cache"], v["qkv"], v["slots"], n, hq, layer, shape);
                acc.PagedAttention(v["out"], v["qkv"], v["cache"], v["tables"], v["rowSeq"], v["rowPos"], n, maxBlocks, hq, layer, shape, scale);
            }, ("cache", 0), ("out", 1e-5));
        }
    }
}

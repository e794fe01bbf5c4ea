using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Engine.Core;

namespace Engine.Kernels.Cpu;

// Token sampling (see Accelerator.SampleTokens) and row gather. One work item per row:
//
//   z        [V]  the row's logits
//   policy   log softmax(z)[token] from LogSoftmaxRows.Statistics / LogProb, the LM head's own
//                 routine, so it equals TokenLogProbForward's logp for the same logits bit for bit
//   greedy   (t <= 0) the first index of max z
//   else     top-k on z (keep z >= the k-th largest z, ties kept), e_j = exp((z_j - max) / t) on
//            the kept tokens (0 elsewhere), top-p on e (keep e >= tau, the largest threshold whose
//            kept mass reaches p of the total), then the inverse CDF in ascending token order:
//            the first kept token whose running sum of e exceeds u * sum e (double).
//
// The k-th largest logit and tau come from a radix select on the float bits (12 + 12 + 8 bits,
// weights 1 or e), a few passes over V and no sort. Everything a row reads or sums runs in a fixed
// order on one worker, so results never depend on the thread count or on the other rows.
internal sealed unsafe partial class CpuAccelerator
{
    /// <summary>Below this many floats a gather runs on the calling thread only.</summary>
    private const long ParallelGatherFloats = 1 << 16;

    private AttentionScratch? samplingScratch;

    protected override void SampleTokensCore(Tensor tokens, Tensor sampleLogp, Tensor policyLogp, Tensor logits, Tensor uniforms,
        Tensor temperatures, Tensor topK, Tensor topP, int s, int v)
    {
        samplingScratch ??= new AttentionScratch(Pool.ThreadCount);
        samplingScratch.Ensure(CpuSampler.ScratchFloats(v));
        var work = new CpuSampler.RowWork
        {
            Scratch = samplingScratch, Tokens = I(tokens), SampleLogp = F(sampleLogp), PolicyLogp = F(policyLogp), Logits = F(logits),
            Uniforms = F(uniforms), Temperatures = F(temperatures), TopK = I(topK), TopP = F(topP), V = v,
        };
        Pool.For(s, ref work);
    }

    protected override void GatherRowsCore(Tensor dst, Tensor src, Tensor rows, int n, int width)
    {
        int* index = I(rows);  // [N]
        long srcRows = src.Length / width;
        for (int i = 0; i < n; i++)
        {
            if ((ulong)index[i] >= (ulong)srcRows)
            {
                throw new ArgumentOutOfRangeException(nameof(rows), index[i], $"row index {i} must be in [0, {srcRows})");
            }
        }

        var work = new GatherWork { Dst = F(dst), Src = F(src), Rows = index, Width = width };
        if ((long)n * width >= ParallelGatherFloats)
        {
            Pool.For(n, ref work);
        }
        else
        {
            for (int i = 0; i < n; i++)
            {
                work.Execute(i, 0);
            }
        }
    }

    /// <summary>dst[i, :] = src[rows[i], :].</summary>
    private struct GatherWork : IParallelWork
    {
        public float* Dst;   // [N, W]
        public float* Src;   // [*, W]
        public int* Rows;    // [N]
        public int Width;

        public readonly void Execute(int item, int worker)
        {
            long bytes = 4L * Width;
            Buffer.MemoryCopy(Src + ((long)Rows[item] * Width), Dst + ((long)item * Width), bytes, bytes);
        }
    }
}

/// <summary>The per-row sampler behind <see cref="Accelerator.SampleTokens"/> (see the notes at the top of Sampling.cs).</summary>
internal static unsafe class CpuSampler
{
    /// <summary>Buckets of the first two radix levels (12 bits each); the third level has 256.</summary>
    private const int Buckets = 4096;

    /// <summary>Floats of per-worker scratch for a vocabulary of <paramref name="v"/>: e [V], candidate ids [V], a [4096] double histogram.</summary>
    public static long ScratchFloats(int v) => (2L * Padded(v)) + (2L * Buckets);

    private static int Padded(int v) => (v + 15) & ~15;

    /// <summary>One row per item.</summary>
    internal struct RowWork : IParallelWork
    {
        public AttentionScratch Scratch;
        public int* Tokens;          // [S]
        public float* SampleLogp;    // [S]
        public float* PolicyLogp;    // [S]
        public float* Logits;        // [S, V]
        public float* Uniforms;      // [S]
        public float* Temperatures;  // [S]
        public int* TopK;            // [S]
        public float* TopP;          // [S]
        public int V;

        public readonly void Execute(int item, int worker)
        {
            SampleRow(Logits + ((long)item * V), V, Uniforms[item], Temperatures[item], TopK[item], TopP[item], Scratch.For(worker),
                out Tokens[item], out SampleLogp[item], out PolicyLogp[item]);
        }
    }

    /// <summary>Draws one token from a row of logits <paramref name="z"/> [V] (see <see cref="Accelerator.SampleTokens"/>).</summary>
    public static void SampleRow(float* z, int v, float u, float temperature, int topK, float topP, float* scratch,
        out int token, out float sampleLogp, out float policyLogp)
    {
        float max = LogSoftmaxRows.Statistics(z, v, out _, out _, out double logS);
        if (!(temperature > 0))
        {
            token = ArgMax(z, v, max);
            sampleLogp = 0;
        }
        else
        {
            float* e = scratch;                                      // [V] unnormalised probabilities, 0 off the kept set
            int* candidates = (int*)(scratch + Padded(v));           // [V] radix candidates
            double* hist = (double*)(scratch + (2L * Padded(v)));    // [Buckets]

            // Top-k: keep every logit >= the k-th largest (all ties at the k-th value stay).
            float keepFrom = float.NegativeInfinity;
            if (topK > 0 && topK < v)
            {
                keepFrom = FromOrderedKey(RadixThreshold<LogitCount>(z, v, topK, hist, candidates));
            }

            ScaledExp(e, z, v, max, temperature, keepFrom);

            // Top-p: keep every e >= tau, the largest threshold whose kept mass reaches p of the total.
            float tau = 0;
            if (topP < 1)
            {
                tau = BitConverter.UInt32BitsToSingle(RadixThreshold<ProbabilityMass>(e, v, topP, hist, candidates));
            }

            // Inverse CDF over the kept tokens in ascending id order.
            double total = 0;
            for (int j = 0; j < v; j++)
            {
                if (e[j] >= tau)
                {
                    total += e[j];
                }
            }

            double target = u * total, cumulative = 0;
            int chosen = -1, last = -1;
            for (int j = 0; j < v; j++)
            {
                float ej = e[j];
                if (ej >= tau && ej > 0)
                {
                    cumulative += ej;
                    last = j;
                    if (cumulative > target)
                    {
                        chosen = j;
                        break;
                    }
                }
            }

            // Rounding at the very end of the CDF: the last kept token with positive probability.
            token = chosen >= 0 ? chosen : last;
            sampleLogp = (float)(Math.Log(e[token]) - Math.Log(total));
        }

        policyLogp = (float)LogSoftmaxRows.LogProb(z[token], max, logS);
    }

    /// <summary>The first index whose value equals <paramref name="max"/> (the row maximum); 0 when none does (NaN logits).</summary>
    private static int ArgMax(float* z, int v, float max)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var m = Vector512.Create(max);
            for (; j + 16 <= v; j += 16)
            {
                ulong hits = Vector512.Equals(Vector512.Load(z + j), m).ExtractMostSignificantBits();
                if (hits != 0)
                {
                    return j + System.Numerics.BitOperations.TrailingZeroCount(hits);
                }
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var m = Vector256.Create(max);
            for (; j + 8 <= v; j += 8)
            {
                uint hits = Vector256.Equals(Vector256.Load(z + j), m).ExtractMostSignificantBits();
                if (hits != 0)
                {
                    return j + System.Numerics.BitOperations.TrailingZeroCount(hits);
                }
            }
        }

        for (; j < v; j++)
        {
            if (z[j] == max)
            {
                return j;
            }
        }

        return 0;
    }

    /// <summary>
    /// <c>e_j = exp((z_j - max) / t)</c> where <c>z_j &gt;= keepFrom</c>, else 0. Every element, the
    /// tail included, goes through the same vector exp, so equal logits always get equal e.
    /// </summary>
    private static void ScaledExp(float* e, float* z, int v, float max, float t, float keepFrom)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            float* tail = stackalloc float[16];
            for (; j < v; j += 16)
            {
                int n = Math.Min(16, v - j);
                float* src = z + j;
                if (n < 16)
                {
                    new Span<float>(tail, 16).Fill(float.NegativeInfinity);
                    new Span<float>(src, n).CopyTo(new Span<float>(tail, 16));
                    src = tail;
                }

                Vector512<float> x = Vector512.Load(src);
                Vector512<float> p = LogSoftmaxRows.Exp((x - Vector512.Create(max)) / Vector512.Create(t));
                p = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(x, Vector512.Create(keepFrom)), p, Vector512<float>.Zero);
                if (n < 16)
                {
                    p.Store(tail);
                    new Span<float>(tail, n).CopyTo(new Span<float>(e + j, n));
                }
                else
                {
                    p.Store(e + j);
                }
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            float* tail = stackalloc float[8];
            for (; j < v; j += 8)
            {
                int n = Math.Min(8, v - j);
                float* src = z + j;
                if (n < 8)
                {
                    new Span<float>(tail, 8).Fill(float.NegativeInfinity);
                    new Span<float>(src, n).CopyTo(new Span<float>(tail, 8));
                    src = tail;
                }

                Vector256<float> x = Vector256.Load(src);
                Vector256<float> p = LogSoftmaxRows.Exp((x - Vector256.Create(max)) / Vector256.Create(t));
                p = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(x, Vector256.Create(keepFrom)), p, Vector256<float>.Zero);
                if (n < 8)
                {
                    p.Store(tail);
                    new Span<float>(tail, n).CopyTo(new Span<float>(e + j, n));
                }
                else
                {
                    p.Store(e + j);
                }
            }
        }
        else
        {
            for (; j < v; j++)
            {
                e[j] = z[j] >= keepFrom ? MathF.Exp((z[j] - max) / t) : 0f;
            }
        }
    }

    /// <summary>What a radix select ranks and weighs.</summary>
    private interface IRadixWeights
    {
        /// <summary>Unsigned key ordered as the values.</summary>
        static abstract uint Key(float x);

        /// <summary>Weight of an element.</summary>
        static abstract double Weight(float x);

        /// <summary>The target weight given the parameter and the total weight.</summary>
        static abstract double Target(double parameter, double total);
    }

    /// <summary>Logits counted: the threshold is the k-th largest logit.</summary>
    private readonly struct LogitCount : IRadixWeights
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static uint Key(float x) => OrderedKey(x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static double Weight(float x) => 1;

        public static double Target(double parameter, double total) => parameter;
    }

    /// <summary>Non-negative probabilities weighed by themselves: the threshold keeps a share of the mass.</summary>
    private readonly struct ProbabilityMass : IRadixWeights
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static uint Key(float x) => BitConverter.SingleToUInt32Bits(x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static double Weight(float x) => x;

        public static double Target(double parameter, double total) => parameter * total;
    }

    /// <summary>
    /// The largest key <c>x</c> such that the elements with key &gt;= x weigh at least the target
    /// (<see cref="IRadixWeights.Target"/> of <paramref name="parameter"/> and the total weight):
    /// histograms of the top 12, middle 12 and low 8 key bits, walked from the top. Every weight sum
    /// runs in a fixed order (index order within a bucket, buckets from the top), so the walk is
    /// monotone and deterministic. Only buckets of positive weight can hold the threshold, so at
    /// least one element is always kept. Rounding that leaves a level short of the target keeps the
    /// whole bucket of the level above.
    /// </summary>
    private static uint RadixThreshold<TW>(float* x, int v, double parameter, double* hist, int* candidates)
        where TW : struct, IRadixWeights
    {
        // Level 1: bits 31..20 over every element.
        new Span<double>(hist, Buckets).Clear();
        for (int j = 0; j < v; j++)
        {
            hist[TW.Key(x[j]) >> 20] += TW.Weight(x[j]);
        }

        double total = 0;
        for (int b = Buckets - 1; b >= 0; b--)
        {
            total += hist[b];
        }

        double target = TW.Target(parameter, total), above = 0;
        int b1 = Walk(hist, Buckets, target, ref above);
        if (b1 < 0)
        {
            return 0;
        }

        // Level 2: bits 19..8 of the elements in bucket b1, which become the candidates.
        new Span<double>(hist, Buckets).Clear();
        int count = 0;
        for (int j = 0; j < v; j++)
        {
            uint key = TW.Key(x[j]);
            if (key >> 20 == (uint)b1)
            {
                hist[(key >> 8) & 0xFFF] += TW.Weight(x[j]);
                candidates[count++] = j;
            }
        }

        int b2 = Walk(hist, Buckets, target, ref above);
        if (b2 < 0)
        {
            return (uint)b1 << 20;
        }

        // Level 3: bits 7..0 of the candidates in bucket (b1, b2).
        new Span<double>(hist, 256).Clear();
        for (int c = 0; c < count; c++)
        {
            float value = x[candidates[c]];
            uint key = TW.Key(value);
            if (((key >> 8) & 0xFFF) == (uint)b2)
            {
                hist[key & 0xFF] += TW.Weight(value);
            }
        }

        int b3 = Walk(hist, 256, target, ref above);
        return b3 < 0 ? ((uint)b1 << 20) | ((uint)b2 << 8) : ((uint)b1 << 20) | ((uint)b2 << 8) | (uint)b3;
    }

    /// <summary>The highest bucket of positive weight at which <paramref name="above"/> plus its weight reaches the target; -1 if none.</summary>
    private static int Walk(double* hist, int buckets, double target, ref double above)
    {
        for (int b = buckets - 1; b >= 0; b--)
        {
            double h = hist[b];
            if (h > 0)
            {
                if (above + h >= target)
                {
                    return b;
                }

                above += h;
            }
        }

        return -1;
    }

    /// <summary>An unsigned key ordered as the floats (-0 taken as +0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint OrderedKey(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x == 0 ? 0f : x);
        return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
    }

    /// <summary>The float of an <see cref="OrderedKey"/>.</summary>
    private static float FromOrderedKey(uint key) =>
        BitConverter.UInt32BitsToSingle((key & 0x80000000u) != 0 ? key & 0x7FFFFFFFu : ~key);
}

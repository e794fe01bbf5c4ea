using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Engine.Core;

namespace Engine.Kernels.Cpu;

// Token sampling (see Accelerator.SampleTokens) and row gather. One work item per row:
//
//   z        [V]  the row's logits
//   policy   log softmax(z)[token] from LogSoftmaxRows.Statistics / LogProb, the LM head's own
//                 routine, so it equals TokenLogProbForward's logp for the same logits bit for bit
//   greedy   (t <= 0, or NaN) the first index of max z
//   else     top-k on z: keep z >= the k-th largest z (every tie at the k-th value stays);
//            e_j = exp((z_j - max) / t) (one vector exp for every element, so equal logits get
//            equal e); top-p on e: keep e >= tau, the largest threshold whose kept mass reaches
//            p of the total (every tie at tau stays; the largest e always stays); then the inverse
//            CDF in ascending token order: the first kept token whose running sum of e exceeds
//            u * sum e, sums in double over blocks of 64 entries (BlockSum), the last kept token
//            of positive e if rounding leaves u * sum e uncrossed. sampleLogp = log e_token - log sum e.
//
// No sort: the k-th largest logit and tau come from bisection on the float bits, each probe one
// vectorised pass that counts (top-k) or sums (top-p: float lanes over chunks of 1024, chunk sums
// in double, monotone in the threshold) what lies at or above it; a probe that keeps at most half
// the list cuts the list to what it keeps, so later probes get cheaper. Both searches start from a
// bound that cannot cut a kept token: the k-th largest of the maxima of m >= 4k chunks is at most
// the k-th largest logit (top-k then probes only the logits above it), and tau is at least
// (1 - p) S / n, since what lies below that weighs less than (1 - p) S (top-p starts from half of
// it). After truncation only the kept tokens are summed. Every sum a row uses runs in a fixed order
// on one worker, so results never depend on the thread count or on the other rows.
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
    /// <summary>Entries per block of the inverse-CDF sums.</summary>
    private const int SumBlock = 64;

    /// <summary>Below this many elements the prefilters are not worth a pass.</summary>
    private const int PrefilterMin = 2048;

    /// <summary>Floats of per-worker scratch for a vocabulary of <paramref name="v"/>: two value and two id lists [V] and chunk maxima.</summary>
    public static long ScratchFloats(int v) => 5L * Padded(v);

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
            int pv = Padded(v);
            float* valuesA = scratch;                         // [V] a list of values (logits, then e)
            float* valuesB = valuesA + pv;                    // [V] another
            int* idsA = (int*)(valuesB + pv);                 // [V] token ids of list A
            int* idsB = idsA + pv;                            // [V] token ids of list B
            float* maxima = (float*)(idsB + pv);              // [V / 16] chunk maxima, later [V / 64] double block sums

            // The kept tokens as a list, ids ascending; the field narrows step by step.
            var list = new TokenList(z, null, v);
            if (topK > 0 && topK < v)
            {
                // Top-k: logits at or above the k-th largest (ties included), then their e.
                float bound = ChunkBound(z, v, topK, max, maxima);
                if (bound > float.NegativeInfinity)
                {
                    list = Keep(list, bound, valuesA, idsA);
                }

                float keepFrom = FromOrderedKey(SearchThreshold<LogitCount>(ref list, topK,
                    OrderedKey(float.NegativeInfinity), OrderedKey(max) + 1, valuesA, idsA));
                list = Keep(list, keepFrom, valuesA, idsA);
                ScaledExp(list.Values, list.Values, list.Count, max, temperature);
            }
            else
            {
                ScaledExp(valuesA, z, v, max, temperature);
                list = new TokenList(valuesA, null, v);
            }

            if (topP < 1)
            {
                // Top-p: tau is at least (1 - p) S / (2n), where the search starts.
                double mass = ProbabilityMass.Weigh(list.Values, list.Count, 0f, out _);
                float bound = (float)(0.5 * (1 - topP) * mass / list.Count);
                uint lo = bound > 0 ? BitConverter.SingleToUInt32Bits(bound) : 0;
                float tau = BitConverter.UInt32BitsToSingle(SearchThreshold<ProbabilityMass>(ref list, topP * mass,
                    lo, BitConverter.SingleToUInt32Bits(1f) + 1, valuesB, idsB));
                list = Keep(list, tau, valuesB, idsB);
            }

            float* e = list.Values;
            int* ids = list.Ids;
            int n = list.Count;

            // Inverse CDF over the kept tokens in ascending id order.
            double* sums = (double*)maxima;                   // [V / 64] block sums
            double total = BlockedTotal(e, n, sums);
            int at = Pick(e, n, sums, Math.Max(0, u) * total);
            token = ids == null ? at : ids[at];
            sampleLogp = (float)(Math.Log(e[at]) - Math.Log(total));
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
                    return j + BitOperations.TrailingZeroCount(hits);
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
                    return j + BitOperations.TrailingZeroCount(hits);
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
    /// A lower bound on the k-th largest logit: the k-th largest of the maxima of m &gt;= 4k chunks
    /// (k chunks reach it, each with an element at least that large). -inf when the row is too
    /// small or k too large for the bound to pay.
    /// </summary>
    private static float ChunkBound(float* z, int v, int k, float max, float* maxima)
    {
        if (v < PrefilterMin || (long)k * 4 * 16 > v)
        {
            return float.NegativeInfinity;
        }

        int chunk = 256;
        while ((long)k * 4 * chunk > v)
        {
            chunk /= 2;
        }

        int m = 0;
        for (int j = 0; j < v; j += chunk)
        {
            maxima[m++] = LogSoftmaxRows.Max(z + j, Math.Min(chunk, v - j));
        }

        var list = new TokenList(maxima, null, m);
        return FromOrderedKey(SearchThreshold<LogitCount>(ref list, k, OrderedKey(float.NegativeInfinity), OrderedKey(max) + 1, maxima, null));
    }

    /// <summary>A list of values and their token ids, ids ascending (<see cref="Ids"/> null: the ids are the positions).</summary>
    private readonly struct TokenList(float* values, int* ids, int count)
    {
        public readonly float* Values = values;
        public readonly int* Ids = ids;
        public readonly int Count = count;
    }

    /// <summary>
    /// The entries of <paramref name="list"/> at or above <paramref name="threshold"/>: in place when
    /// the list has its own ids or no spare ids are given (then ids are not kept), else into the spare
    /// buffers.
    /// </summary>
    private static TokenList Keep(in TokenList list, float threshold, float* spareValues, int* spareIds)
    {
        if (list.Ids != null || spareIds == null)
        {
            return new TokenList(list.Values, list.Ids, Compact(list.Values, list.Ids, list.Count, threshold, list.Values, list.Ids));
        }

        return new TokenList(spareValues, spareIds, Compact(list.Values, null, list.Count, threshold, spareValues, spareIds));
    }

    /// <summary>
    /// Keeps the entries of a list with value &gt;= <paramref name="threshold"/>, in order: values to
    /// <paramref name="outValues"/>, ids to <paramref name="outIds"/> if not null (<paramref name="ids"/>
    /// null: the ids are the positions). The output may be the input (it never overtakes the reading).
    /// Returns the count.
    /// </summary>
    private static int Compact(float* values, int* ids, int n, float threshold, float* outValues, int* outIds)
    {
        int count = 0, j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var th = Vector512.Create(threshold);
            for (; j + 16 <= n; j += 16)
            {
                ulong hits = Vector512.GreaterThanOrEqual(Vector512.Load(values + j), th).ExtractMostSignificantBits();
                for (; hits != 0; hits &= hits - 1)
                {
                    int i = j + BitOperations.TrailingZeroCount(hits);
                    outValues[count] = values[i];
                    if (outIds != null)
                    {
                        outIds[count] = ids == null ? i : ids[i];
                    }

                    count++;
                }
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var th = Vector256.Create(threshold);
            for (; j + 8 <= n; j += 8)
            {
                uint hits = Vector256.GreaterThanOrEqual(Vector256.Load(values + j), th).ExtractMostSignificantBits();
                for (; hits != 0; hits &= hits - 1)
                {
                    int i = j + BitOperations.TrailingZeroCount(hits);
                    outValues[count] = values[i];
                    if (outIds != null)
                    {
                        outIds[count] = ids == null ? i : ids[i];
                    }

                    count++;
                }
            }
        }

        for (; j < n; j++)
        {
            if (values[j] >= threshold)
            {
                outValues[count] = values[j];
                if (outIds != null)
                {
                    outIds[count] = ids == null ? j : ids[j];
                }

                count++;
            }
        }

        return count;
    }

    /// <summary>
    /// <c>e_j = exp((z_j - max) / t)</c> for a list of n logits (<paramref name="e"/> may be
    /// <paramref name="z"/>). Every element, the tail included, goes through the same vector exp, so
    /// equal logits always get equal e wherever they sit.
    /// </summary>
    private static void ScaledExp(float* e, float* z, int n, float max, float t)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            float* tail = stackalloc float[16];
            var m = Vector512.Create(max);
            var vt = Vector512.Create(t);
            for (; j < n; j += 16)
            {
                int count = Math.Min(16, n - j);
                float* src = z + j;
                if (count < 16)
                {
                    new Span<float>(tail, 16).Fill(max);
                    new Span<float>(src, count).CopyTo(new Span<float>(tail, 16));
                    src = tail;
                }

                Vector512<float> p = LogSoftmaxRows.Exp((Vector512.Load(src) - m) / vt);
                if (count < 16)
                {
                    p.Store(tail);
                    new Span<float>(tail, count).CopyTo(new Span<float>(e + j, count));
                }
                else
                {
                    p.Store(e + j);
                }
            }
        }
        else
        {
            // Without AVX2 too (in software): the same exp lane by lane, never a scalar one.
            float* tail = stackalloc float[8];
            var m = Vector256.Create(max);
            var vt = Vector256.Create(t);
            for (; j < n; j += 8)
            {
                int count = Math.Min(8, n - j);
                float* src = z + j;
                if (count < 8)
                {
                    new Span<float>(tail, 8).Fill(max);
                    new Span<float>(src, count).CopyTo(new Span<float>(tail, 8));
                    src = tail;
                }

                Vector256<float> p = LogSoftmaxRows.Exp((Vector256.Load(src) - m) / vt);
                if (count < 8)
                {
                    p.Store(tail);
                    new Span<float>(tail, count).CopyTo(new Span<float>(e + j, count));
                }
                else
                {
                    p.Store(e + j);
                }
            }
        }
    }

    /// <summary>
    /// Sum of a block of at most <see cref="SumBlock"/> values in double: eight running sums s_i of
    /// the entries j = i mod 8 (four Vector128 doubles), a tail past the last group of eight added to
    /// s0 in order, then ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double BlockSum(float* e, int n)
    {
        Vector128<double> s01 = Vector128<double>.Zero, s23 = s01, s45 = s01, s67 = s01;
        int j = 0;
        for (; j + 8 <= n; j += 8)
        {
            Vector128<float> x = Vector128.Load(e + j), y = Vector128.Load(e + j + 4);
            s01 += Vector128.WidenLower(x);
            s23 += Vector128.WidenUpper(x);
            s45 += Vector128.WidenLower(y);
            s67 += Vector128.WidenUpper(y);
        }

        double s0 = s01.GetElement(0);
        for (; j < n; j++)
        {
            s0 += e[j];
        }

        return ((s0 + s01.GetElement(1)) + (s23.GetElement(0) + s23.GetElement(1)))
            + ((s45.GetElement(0) + s45.GetElement(1)) + (s67.GetElement(0) + s67.GetElement(1)));
    }

    /// <summary>Sum of a list: its <see cref="BlockSum"/>s of <see cref="SumBlock"/> entries (kept in <paramref name="sums"/>) added in order.</summary>
    private static double BlockedTotal(float* e, int n, double* sums)
    {
        double total = 0;
        for (int b = 0, i = 0; b < n; b += SumBlock, i++)
        {
            sums[i] = BlockSum(e + b, Math.Min(SumBlock, n - b));
            total += sums[i];
        }

        return total;
    }

    /// <summary>
    /// The inverse CDF: the first entry whose running sum exceeds <paramref name="target"/>, the sum
    /// being the block sums of <see cref="BlockedTotal"/> up to the entry's block plus the block's
    /// entries one by one. When rounding leaves the target uncrossed, the last entry of positive
    /// value (of the block the block sums pointed to, else of the list).
    /// </summary>
    private static int Pick(float* e, int n, double* sums, double target)
    {
        double cumulative = 0;
        for (int b = 0, i = 0; b < n; b += SumBlock, i++)
        {
            if (cumulative + sums[i] > target)
            {
                double c = cumulative;
                int last = -1;
                for (int j = b; j < Math.Min(n, b + SumBlock); j++)
                {
                    if (e[j] > 0)
                    {
                        c += e[j];
                        last = j;
                        if (c > target)
                        {
                            return j;
                        }
                    }
                }

                if (last >= 0)
                {
                    return last;
                }
            }

            cumulative += sums[i];
        }

        for (int j = n - 1; j > 0; j--)
        {
            if (e[j] > 0)
            {
                return j;
            }
        }

        return 0;
    }

    /// <summary>What a threshold search ranks and weighs.</summary>
    private interface IThresholdWeight
    {
        /// <summary>The float a search key stands for.</summary>
        static abstract float ValueOf(uint key);

        /// <summary>Weight of the elements of <c>x[0, n)</c> at or above <paramref name="threshold"/> (monotone: never larger for a larger threshold), and their count.</summary>
        static abstract double Weigh(float* x, int n, float threshold, out int count);
    }

    /// <summary>Logits counted (keys ordered as the floats): for target k the threshold is the k-th largest logit.</summary>
    private readonly struct LogitCount : IThresholdWeight
    {
        public static float ValueOf(uint key) => FromOrderedKey(key);

        public static double Weigh(float* x, int n, float threshold, out int count)
        {
            count = 0;
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                var th = Vector512.Create(threshold);
                for (; j + 16 <= n; j += 16)
                {
                    count += BitOperations.PopCount(Vector512.GreaterThanOrEqual(Vector512.Load(x + j), th).ExtractMostSignificantBits());
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                var th = Vector256.Create(threshold);
                for (; j + 8 <= n; j += 8)
                {
                    count += BitOperations.PopCount(Vector256.GreaterThanOrEqual(Vector256.Load(x + j), th).ExtractMostSignificantBits());
                }
            }

            for (; j < n; j++)
            {
                count += x[j] >= threshold ? 1 : 0;
            }

            return count;
        }
    }

    /// <summary>
    /// Non-negative probabilities weighed by themselves (keys: the float bits): the threshold keeps a
    /// given mass. Sums run in four vectors of float lanes over chunks of 1024 elements (the same 64
    /// lanes as eight Vector256 without AVX-512), the lanes summed in the <see cref="LaneOrder"/> and the chunk sums added in double, the tail past the last whole
    /// group of vectors one by one in double: every step is monotone in every term, so the weight
    /// never grows when the threshold does.
    /// </summary>
    private readonly struct ProbabilityMass : IThresholdWeight
    {
        private const int Chunk = 1024;

        public static float ValueOf(uint key) => BitConverter.UInt32BitsToSingle(key);

        public static double Weigh(float* x, int n, float threshold, out int count)
        {
            double total = 0;
            count = 0;
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                var th = Vector512.Create(threshold);
                int end = n & ~63;
                while (j < end)
                {
                    int stop = Math.Min(end, j + Chunk);
                    Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
                    for (; j < stop; j += 64)
                    {
                        Vector512<float> v0 = Vector512.Load(x + j), v1 = Vector512.Load(x + j + 16);
                        Vector512<float> v2 = Vector512.Load(x + j + 32), v3 = Vector512.Load(x + j + 48);
                        Vector512<float> m0 = Vector512.GreaterThanOrEqual(v0, th), m1 = Vector512.GreaterThanOrEqual(v1, th);
                        Vector512<float> m2 = Vector512.GreaterThanOrEqual(v2, th), m3 = Vector512.GreaterThanOrEqual(v3, th);
                        a0 += v0 & m0;
                        a1 += v1 & m1;
                        a2 += v2 & m2;
                        a3 += v3 & m3;
                        count += BitOperations.PopCount(m0.ExtractMostSignificantBits() | (m1.ExtractMostSignificantBits() << 16)
                            | (m2.ExtractMostSignificantBits() << 32) | (m3.ExtractMostSignificantBits() << 48));
                    }

                    total += LaneOrder.Sum((a0 + a1) + (a2 + a3));
                }
            }
            else
            {
                // The Vector512 form's 64 lanes (four vectors of 16) as eight Vector256 halves.
                var th = Vector256.Create(threshold);
                int end = n & ~63;
                while (j < end)
                {
                    int stop = Math.Min(end, j + Chunk);
                    Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
                    Vector256<float> b0 = a0, b1 = a0, b2 = a0, b3 = a0;
                    for (; j < stop; j += 64)
                    {
                        a0 += Masked(x + j, th, ref count);
                        b0 += Masked(x + j + 8, th, ref count);
                        a1 += Masked(x + j + 16, th, ref count);
                        b1 += Masked(x + j + 24, th, ref count);
                        a2 += Masked(x + j + 32, th, ref count);
                        b2 += Masked(x + j + 40, th, ref count);
                        a3 += Masked(x + j + 48, th, ref count);
                        b3 += Masked(x + j + 56, th, ref count);
                    }

                    total += LaneOrder.Sum((a0 + a1) + (a2 + a3), (b0 + b1) + (b2 + b3));
                }
            }

            for (; j < n; j++)
            {
                if (x[j] >= threshold)
                {
                    total += x[j];
                    count++;
                }
            }

            return total;
        }

        /// <summary>The 8 values at <paramref name="x"/> that are &gt;= the threshold (others 0), counted into <paramref name="count"/>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<float> Masked(float* x, Vector256<float> th, ref int count)
        {
            Vector256<float> v = Vector256.Load(x);
            Vector256<float> keep = Vector256.GreaterThanOrEqual(v, th);
            count += BitOperations.PopCount(keep.ExtractMostSignificantBits());
            return v & keep;
        }
    }

    /// <summary>
    /// The largest key in [<paramref name="lo"/>, <paramref name="hi"/>) whose value's weight in the
    /// list (<see cref="IThresholdWeight.Weigh"/>) reaches <paramref name="target"/>, by bisection on
    /// the keys: the caller guarantees the weight at <paramref name="lo"/> reaches it and at
    /// <paramref name="hi"/> does not, so the answer is <paramref name="lo"/> at worst. When a probe
    /// that reaches the target leaves at most half the list at or above it, the list is cut to those
    /// entries (see <see cref="Keep"/>): later probes are all higher. Deterministic: the probes and
    /// cuts depend only on the data.
    /// </summary>
    private static uint SearchThreshold<TW>(ref TokenList list, double target, uint lo, uint hi, float* spareValues, int* spareIds)
        where TW : struct, IThresholdWeight
    {
        while (hi - lo > 1)
        {
            uint mid = lo + ((hi - lo) / 2);
            float value = TW.ValueOf(mid);
            if (TW.Weigh(list.Values, list.Count, value, out int count) >= target)
            {
                lo = mid;
                if (count <= list.Count / 2)
                {
                    list = Keep(list, value, spareValues, spareIds);
                }
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
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

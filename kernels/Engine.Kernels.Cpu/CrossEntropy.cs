using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Engine.Core;

namespace Engine.Kernels.Cpu;

// LM head fused with log-softmax (see Accelerator.TokenLogProbForward). One driver serves the
// forward, the backward and the fused forward-backward, so all three compute each row's logits and
// its softmax statistics with exactly the same operations:
//
//   for each block of up to RB rows with a target >= 0 (rows with a negative target are skipped:
//   logp = entropy = 0, dx row = 0, nothing added to dW):
//     xb      [R, C]  the block's rows of x (gathered, or x itself when the rows are contiguous)
//     logits  [R, V]  = xb W^T                                  (GEMM, W is [V, C])
//     per row (parallel over rows): max, s = sum exp(z - max), sum exp(z - max) (z - max),
//       logp = z_t - max - log s, H = log s - sum e d / s; backward overwrites the row with
//       dlogits_j = dlogp (onehot_j - p_j) - dentropy p_j (log p_j + H)
//     dW      [V, C] += dlogits^T xb                            (GEMM; accumulated)
//     dxb     [R, C]  = dlogits W                               (GEMM; written)
//
// Only one block of logits ([RB, V], RB = HeadBlockBytes / 4V, at least 1) exists at a time, in
// scratch the accelerator keeps. The block order is fixed and every row pass reduces in a fixed
// order, so results do not depend on the thread count.
internal sealed unsafe partial class CpuAccelerator
{
    private TokenLogProbScratch? tokenLogProbScratch;

    /// <summary>
    /// Bytes of logits the LM-head kernels hold at once: a block has
    /// <c>max(1, HeadBlockBytes / (4 V))</c> rows. Larger blocks make the dW update (a pass over
    /// the whole [V, C] gradient per block) rarer; tests shrink it to force many blocks. 64 MiB: a GPT-2 124M
    /// step (V = 50,257) passes over its 154 MB head gradient once per 333 rows rather than once per 83 with
    /// 16 MiB (head 331 -> 209 ms of a 977 ms T64 B4 step on 2 Zen 5 cores), for 48 MiB more scratch.
    /// </summary>
    internal long HeadBlockBytes { get; set; } = 64L << 20;

    protected override void TokenLogProbForwardCore(Tensor logp, Tensor entropy, Tensor x, Tensor w, Tensor targets, int n, int c, int v) =>
        TokenLogProb(F(logp), F(entropy), null, null, null, null, F(x), F(w), I(targets), n, c, v);

    protected override void TokenLogProbBackwardCore(Tensor dx, Tensor dw, Tensor dlogp, Tensor dentropy, Tensor x, Tensor w, Tensor targets,
        int n, int c, int v) =>
        TokenLogProb(null, null, F(dx), F(dw), F(dlogp), F(dentropy), F(x), F(w), I(targets), n, c, v);

    protected override void TokenLogProbForwardBackwardCore(Tensor logp, Tensor dx, Tensor dw, Tensor dlogp, Tensor x, Tensor w, Tensor targets,
        int n, int c, int v) =>
        TokenLogProb(F(logp), null, F(dx), F(dw), F(dlogp), null, F(x), F(w), I(targets), n, c, v);

    /// <summary>
    /// The blocked driver. Forward outputs (<paramref name="logp"/>, <paramref name="entropy"/>) and
    /// the backward (<paramref name="dx"/> non-null: <paramref name="dw"/>, <paramref name="dlogp"/>
    /// required, <paramref name="dentropy"/> optional) may be requested in any combination.
    /// </summary>
    private void TokenLogProb(
        float* logp,      // [N] or null
        float* entropy,   // [N] or null
        float* dx,        // [N, C] or null (no backward)
        float* dw,        // [V, C] accumulated
        float* dlogp,     // [N]
        float* dentropy,  // [N] or null
        float* x,         // [N, C]
        float* w,         // [V, C]
        int* targets,     // [N]
        int n, int c, int v)
    {
        bool backward = dx != null;
        int rb = (int)Math.Clamp(HeadBlockBytes / (4L * v), 1, n);
        tokenLogProbScratch ??= new TokenLogProbScratch();
        byte* scratch = tokenLogProbScratch.Ensure(TokenLogProbScratch.Bytes(rb, c, v));
        int* rows = (int*)scratch;                                          // [RB]
        float* xg = (float*)(scratch + TokenLogProbScratch.Align(4L * rb)); // [RB, C] gathered x rows
        float* dxg = xg + TokenLogProbScratch.AlignFloats((long)rb * c);    // [RB, C] dx of gathered rows
        float* logits = dxg + TokenLogProbScratch.AlignFloats((long)rb * c); // [RB, V] logits, then dlogits

        var pass = new TokenLogProbRows
        {
            Logits = logits,
            Rows = rows,
            Targets = targets,
            LogP = logp,
            Entropy = entropy,
            DLogP = backward ? dlogp : null,
            DEntropy = backward ? dentropy : null,
            V = v,
        };

        int row = 0;
        while (row < n)
        {
            // Collect up to RB rows with a target; settle the skipped rows on the way.
            int first = row, count = 0;
            while (row < n && count < rb)
            {
                int t = targets[row];
                if (t < 0)
                {
                    if (logp != null)
                    {
                        logp[row] = 0;
                    }

                    if (entropy != null)
                    {
                        entropy[row] = 0;
                    }

                    if (backward)
                    {
                        NativeMemory.Clear(dx + (long)row * c, (nuint)c * 4);
                    }
                }
                else
                {
                    if (t >= v)
                    {
                        throw new ArgumentOutOfRangeException(nameof(targets), $"target {t} of row {row} is outside the vocabulary [0, {v})");
                    }

                    rows[count++] = row;
                }

                row++;
            }

            if (count == 0)
            {
                continue;
            }

            // Contiguous rows are used in place; otherwise gather them.
            bool contiguous = count == row - first;
            float* xb = xg;  // [R, C]
            if (contiguous)
            {
                xb = x + (long)first * c;
            }
            else
            {
                for (int r = 0; r < count; r++)
                {
                    Buffer.MemoryCopy(x + (long)rows[r] * c, xg + (long)r * c, 4L * c, 4L * c);
                }
            }

            // logits [R, V] = xb [R, C] · W [V, C]^T
            CpuGemm.Multiply(Pool, logits, xb, w, count, v, c, false, true, 1f, 0f, null);
            Pool.For(count, ref pass);
            if (!backward)
            {
                continue;
            }

            // dW [V, C] += dlogits^T [V, R] · xb [R, C]  (before dx is written: xb may be x itself)
            CpuGemm.Multiply(Pool, dw, logits, xb, v, c, count, true, false, 1f, 1f, null);

            // dx rows [R, C] = dlogits [R, V] · W [V, C]
            float* dxb = contiguous ? dx + (long)first * c : dxg;
            CpuGemm.Multiply(Pool, dxb, logits, w, count, c, v, false, false, 1f, 0f, null);
            if (!contiguous)
            {
                for (int r = 0; r < count; r++)
                {
                    Buffer.MemoryCopy(dxg + (long)r * c, dx + (long)rows[r] * c, 4L * c, 4L * c);
                }
            }
        }
    }

    /// <summary>
    /// The row pass over one block of logits: item r is block row r (source row <c>Rows[r]</c>).
    /// Writes logp / entropy when asked and, when <see cref="DLogP"/> is set, replaces the row's
    /// logits by the logit gradient.
    /// </summary>
    private struct TokenLogProbRows : IParallelWork
    {
        public float* Logits;    // [R, V]
        public int* Rows;        // [R] source row of each block row
        public int* Targets;     // [N]
        public float* LogP;      // [N] or null
        public float* Entropy;   // [N] or null
        public float* DLogP;     // [N] or null: no backward
        public float* DEntropy;  // [N] or null
        public int V;

        public readonly void Execute(int item, int worker)
        {
            int row = Rows[item];
            int t = Targets[row];
            float* z = Logits + (long)item * V;  // [V]
            float max = LogSoftmaxRows.Statistics(z, V, out double s, out double sed, out double logS);
            double entropy = logS - sed / s;                      // -sum p log p with log p = d - log s
            double lpt = LogSoftmaxRows.LogProb(z[t], max, logS); // log p of the target
            if (LogP != null)
            {
                LogP[row] = (float)lpt;
            }

            if (Entropy != null)
            {
                Entropy[row] = (float)entropy;
            }

            if (DLogP == null)
            {
                return;
            }

            // dz_j = -p_j (g + h (log p_j + H)) + g [j = t], log p_j = d_j - log s:
            // dz_j = -p_j (c0 + h d_j) with c0 = g + h (H - log s) = g - h sed / s.
            double g = DLogP[row];
            double h = DEntropy == null ? 0 : DEntropy[row];
            LogSoftmaxRows.Gradient(z, V, max, (float)(1 / s), (float)(g - h * sed / s), (float)h);

            // The target entry in double: g (1 - p_t) loses everything to cancellation in float when p_t -> 1.
            double pt = Math.Exp(lpt);
            z[t] = (float)(-g * LogSoftmaxRows.ExpM1(lpt) - h * pt * (lpt + entropy));
        }
    }

    /// <summary>Native scratch for the LM-head blocks, grown on demand and kept for later calls.</summary>
    private sealed class TokenLogProbScratch
    {
        private void* pointer;
        private long size;

        ~TokenLogProbScratch()
        {
            NativeMemory.AlignedFree(pointer);
        }

        /// <summary>Bytes for a block of <paramref name="rb"/> rows: row ids, two [RB, C] panels and [RB, V] logits.</summary>
        public static long Bytes(int rb, int c, int v) =>
            Align(4L * rb) + 4 * (2 * AlignFloats((long)rb * c) + AlignFloats((long)rb * v));

        public static long Align(long bytes) => (bytes + 63) & ~63L;

        public static long AlignFloats(long count) => (count + 15) & ~15L;

        /// <summary>A 64-byte aligned block of at least <paramref name="bytes"/> bytes (contents undefined).</summary>
        public byte* Ensure(long bytes)
        {
            if (bytes > size)
            {
                NativeMemory.AlignedFree(pointer);
                pointer = null;
                size = 0;
                pointer = NativeMemory.AlignedAlloc((nuint)bytes, 64);
                size = bytes;
            }

            return (byte*)pointer;
        }
    }
}

/// <summary>Vectorised per-row pieces of log-softmax over a row of logits, reduced in a fixed order.</summary>
internal static unsafe class LogSoftmaxRows
{
    /// <summary>Elements summed in float lanes before the partial sum is added in double.</summary>
    private const int Chunk = 512;

    // Cephes expf constants: ln 2 split in a part exact in float and the rest; the polynomial for
    // (exp(r) - 1 - r) / r^2 on |r| <= ln 2 / 2.
    private const float ExpLow = -87.33655f;
    private const float ExpHigh = 88f;
    private const float Log2E = 1.44269504088896341f;
    private const float Ln2Hi = 0.693359375f;
    private const float Ln2Lo = -2.12194440e-4f;
    private const float P0 = 1.9875691500e-4f;
    private const float P1 = 1.3981999507e-3f;
    private const float P2 = 8.3334519073e-3f;
    private const float P3 = 4.1665795894e-2f;
    private const float P4 = 1.6666665459e-1f;
    private const float P5 = 5.0000001201e-1f;

    /// <summary>
    /// The softmax statistics of a row of logits: returns <c>max</c>, with <c>s = sum_j exp(z_j - max)</c>,
    /// <c>sed = sum_j exp(z_j - max) (z_j - max)</c> and <c>logS = log s</c>. Every log-prob the LM
    /// head reports comes from these and <see cref="LogProb"/>; the sampler calls the same two so its
    /// policy log-probs are bit-identical to the training forward's for the same logits.
    /// </summary>
    public static float Statistics(float* z, int v, out double s, out double sed, out double logS)
    {
        float max = Max(z, v);
        SumExp(z, v, max, out s, out sed);
        logS = Math.Log(s);
        return max;
    }

    /// <summary>log softmax of an element <paramref name="zt"/> of a row with the given <see cref="Statistics"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double LogProb(float zt, float max, double logS) => (double)zt - max - logS;

    /// <summary>Largest element of <c>z[0, v)</c> (NaN if any is NaN).</summary>
    public static float Max(float* z, int v)
    {
        int j = 0;
        float max = float.NegativeInfinity;
        if (Vector512.IsHardwareAccelerated && v >= 16)
        {
            Vector512<float> acc = Vector512.Load(z);
            for (j = 16; j + 16 <= v; j += 16)
            {
                acc = Vector512.Max(acc, Vector512.Load(z + j));
            }

            max = HorizontalMax(Vector256.Max(acc.GetLower(), acc.GetUpper()));
        }
        else if (v >= 8)
        {
            Vector256<float> acc = Vector256.Load(z);
            for (j = 8; j + 8 <= v; j += 8)
            {
                acc = Vector256.Max(acc, Vector256.Load(z + j));
            }

            max = HorizontalMax(acc);
        }

        for (; j < v; j++)
        {
            max = MathF.Max(max, z[j]);
        }

        return max;
    }

    /// <summary>
    /// <c>s = sum_j exp(z_j - max)</c> and <c>sed = sum_j exp(z_j - max) (z_j - max)</c>: float
    /// lanes over chunks of <see cref="Chunk"/> elements, the chunk sums added in double.
    /// </summary>
    public static void SumExp(float* z, int v, float max, out double s, out double sed)
    {
        s = 0;
        sed = 0;
        int j = 0;
        if (Vector512.IsHardwareAccelerated && v >= 16)
        {
            var m = Vector512.Create(max);
            int end = v & ~15;
            while (j < end)
            {
                int stop = Math.Min(end, j + Chunk);
                Vector512<float> accS = Vector512<float>.Zero, accD = Vector512<float>.Zero;
                for (; j < stop; j += 16)
                {
                    Vector512<float> d = Vector512.Load(z + j) - m;
                    Vector512<float> e = Exp(d);
                    accS += e;
                    accD = Vector512.FusedMultiplyAdd(e, d, accD);
                }

                s += LaneOrder.Sum(accS);
                sed += LaneOrder.Sum(accD);
            }
        }
        else if (v >= 16)
        {
            // The 16 lanes of the Vector512 form as two halves (LaneOrder).
            var m = Vector256.Create(max);
            int end = v & ~15;
            while (j < end)
            {
                int stop = Math.Min(end, j + Chunk);
                Vector256<float> accS = Vector256<float>.Zero, accD = Vector256<float>.Zero;
                Vector256<float> accS8 = Vector256<float>.Zero, accD8 = Vector256<float>.Zero;
                for (; j < stop; j += 16)
                {
                    Vector256<float> d = Vector256.Load(z + j) - m, d8 = Vector256.Load(z + j + 8) - m;
                    Vector256<float> e = Exp(d), e8 = Exp(d8);
                    accS += e;
                    accS8 += e8;
                    accD = Vector256.FusedMultiplyAdd(e, d, accD);
                    accD8 = Vector256.FusedMultiplyAdd(e8, d8, accD8);
                }

                s += LaneOrder.Sum(accS, accS8);
                sed += LaneOrder.Sum(accD, accD8);
            }
        }

        for (; j < v; j++)
        {
            double d = (double)z[j] - max;
            double e = Math.Exp(d);
            s += e;
            sed += e * d;
        }
    }

    /// <summary>In place: <c>z_j &lt;- -exp(z_j - max) invS (c0 + h (z_j - max))</c>.</summary>
    public static void Gradient(float* z, int v, float max, float invS, float c0, float h)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated && v >= 16)
        {
            var m = Vector512.Create(max);
            var scale = Vector512.Create(-invS);
            var vc = Vector512.Create(c0);
            var vh = Vector512.Create(h);
            for (; j + 16 <= v; j += 16)
            {
                Vector512<float> d = Vector512.Load(z + j) - m;
                Vector512<float> p = Exp(d) * scale;
                Vector512.Store(p * Vector512.FusedMultiplyAdd(vh, d, vc), z + j);
            }
        }
        else
        {
            // Up to the same multiple of 16 as the Vector512 form: the tail is computed in double.
            var m = Vector256.Create(max);
            var scale = Vector256.Create(-invS);
            var vc = Vector256.Create(c0);
            var vh = Vector256.Create(h);
            for (int end = v & ~15; j < end; j += 8)
            {
                Vector256<float> d = Vector256.Load(z + j) - m;
                Vector256<float> p = Exp(d) * scale;
                Vector256.Store(p * Vector256.FusedMultiplyAdd(vh, d, vc), z + j);
            }
        }

        for (; j < v; j++)
        {
            float d = z[j] - max;
            z[j] = (float)(-Math.Exp(d) * invS * (c0 + (double)h * d));
        }
    }

    /// <summary>
    /// <c>exp(x)</c> for <c>x &lt;= 88</c>, within 2 ulp (Cephes expf: x = n ln 2 + r with |r| &lt;= ln 2 / 2,
    /// a degree-6 polynomial for exp(r), then 2^n through the exponent bits); 0 below -87.3, where
    /// the result would be subnormal. Measured 2-4x faster here than the library's Vector512.Exp
    /// (which works in double) and as accurate for the row passes' needs (max relative error 1.2e-7
    /// on [-87, 0]).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        Vector512<float> under = Vector512.LessThan(x, Vector512.Create(ExpLow));
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(ExpLow)), Vector512.Create(ExpHigh));
        Vector512<float> n = Vector512.Round(x * Vector512.Create(Log2E));
        Vector512<float> r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Hi), x);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Lo), r);
        Vector512<float> y = Vector512.Create(P0);
        y = Vector512.FusedMultiplyAdd(y, r, Vector512.Create(P1));
        y = Vector512.FusedMultiplyAdd(y, r, Vector512.Create(P2));
        y = Vector512.FusedMultiplyAdd(y, r, Vector512.Create(P3));
        y = Vector512.FusedMultiplyAdd(y, r, Vector512.Create(P4));
        y = Vector512.FusedMultiplyAdd(y, r, Vector512.Create(P5));
        y = Vector512.FusedMultiplyAdd(y, r * r, r + Vector512<float>.One);
        Vector512<float> scale = Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
        return Vector512.AndNot(y * scale, under);
    }

    /// <summary>The Vector256 form of <see cref="Exp(Vector512{float})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        Vector256<float> under = Vector256.LessThan(x, Vector256.Create(ExpLow));
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(ExpLow)), Vector256.Create(ExpHigh));
        Vector256<float> n = Vector256.Round(x * Vector256.Create(Log2E));
        Vector256<float> r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Hi), x);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Lo), r);
        Vector256<float> y = Vector256.Create(P0);
        y = Vector256.FusedMultiplyAdd(y, r, Vector256.Create(P1));
        y = Vector256.FusedMultiplyAdd(y, r, Vector256.Create(P2));
        y = Vector256.FusedMultiplyAdd(y, r, Vector256.Create(P3));
        y = Vector256.FusedMultiplyAdd(y, r, Vector256.Create(P4));
        y = Vector256.FusedMultiplyAdd(y, r, Vector256.Create(P5));
        y = Vector256.FusedMultiplyAdd(y, r * r, r + Vector256<float>.One);
        Vector256<float> scale = Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        return Vector256.AndNot(y * scale, under);
    }

    /// <summary><c>exp(x) - 1</c> without cancellation near 0 (Kahan's formulation).</summary>
    public static double ExpM1(double x)
    {
        double u = Math.Exp(x);
        if (u == 1.0)
        {
            return x;
        }

        double um1 = u - 1.0;
        return um1 == -1.0 ? -1.0 : um1 * x / Math.Log(u);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HorizontalMax(Vector256<float> v)
    {
        Vector128<float> a = Vector128.Max(v.GetLower(), v.GetUpper());
        return MathF.Max(MathF.Max(a[0], a[1]), MathF.Max(a[2], a[3]));
    }
}

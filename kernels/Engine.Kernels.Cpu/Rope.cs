using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Engine.Core;

namespace Engine.Kernels.Cpu;

// Rotary position embedding, in place, HF rotate-half pairing: within each head of size D, element
// j pairs with j + D/2 and both rotate by the angle of (positions[row], j). The backward is the
// transpose rotation, i.e. the same loop with the sine negated (negation is exact, so forward then
// backward differs from the identity only by the rounding of cos^2 + sin^2).
internal sealed unsafe partial class CpuAccelerator
{
    protected override void RopeCore(Tensor x, Tensor positions, Tensor cos, Tensor sin, int n, int rowStride, int firstHead, int heads,
        int d, bool inverse)
    {
        int half = d / 2;
        long tablePositions = Math.Min(cos.Length, sin.Length) / half;
        int* pos = I(positions);
        for (int r = 0; r < n; r++)
        {
            if ((ulong)pos[r] >= (ulong)tablePositions)
            {
                throw new ArgumentOutOfRangeException(nameof(positions), pos[r],
                    $"row {r} has position {pos[r]}, outside the cos/sin tables of {tablePositions} positions");
            }
        }

        RunChunks(n, RowsPerItem((long)heads * d), new RopeKernel
        {
            X = F(x), Positions = pos, Cos = F(cos), Sin = F(sin), RowStride = rowStride, FirstHead = firstHead, Heads = heads, D = d,
            SineSign = inverse ? -1f : 1f,
        });
    }
}

/// <summary>
/// RoPE over rows: for each head, with c = cos[p, j], s = SineSign * sin[p, j] (p = positions[row]):
/// <c>x1' = x1 c - x2 s; x2' = x2 c + x1 s</c>, x1 = head[j], x2 = head[j + D/2].
/// </summary>
internal unsafe struct RopeKernel : IChunkKernel
{
    public float* X;        // [N, RowStride], heads [FirstHead, FirstHead + Heads) of size D rotated
    public int* Positions;  // [N]
    public float* Cos;      // [P, D/2]
    public float* Sin;      // [P, D/2]
    public int RowStride;
    public int FirstHead;
    public int Heads;
    public int D;
    public float SineSign;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        int half = D / 2;
        float sign = SineSign;
        for (long r = start; r < start + count; r++)
        {
            long p = Positions[r];
            float* cs = Cos + p * half, sn = Sin + p * half;
            float* row = X + r * RowStride + (long)FirstHead * D;
            for (int h = 0; h < Heads; h++)
            {
                float* x1 = row + (long)h * D, x2 = x1 + half;
                int j = 0;
                if (Vector512.IsHardwareAccelerated)
                {
                    Vector512<float> sv = Vector512.Create(sign);
                    for (; j <= half - 16; j += 16)
                    {
                        Vector512<float> c = Vector512.Load(cs + j), s = Vector512.Load(sn + j) * sv;
                        Vector512<float> a = Vector512.Load(x1 + j), b = Vector512.Load(x2 + j);
                        (a * c - b * s).Store(x1 + j);
                        (b * c + a * s).Store(x2 + j);
                    }
                }
                else if (Vector256.IsHardwareAccelerated)
                {
                    Vector256<float> sv = Vector256.Create(sign);
                    for (; j <= half - 8; j += 8)
                    {
                        Vector256<float> c = Vector256.Load(cs + j), s = Vector256.Load(sn + j) * sv;
                        Vector256<float> a = Vector256.Load(x1 + j), b = Vector256.Load(x2 + j);
                        (a * c - b * s).Store(x1 + j);
                        (b * c + a * s).Store(x2 + j);
                    }
                }

                for (; j < half; j++)
                {
                    float c = cs[j], s = sn[j] * sign;
                    float a = x1[j], b = x2[j];
                    x1[j] = a * c - b * s;
                    x2[j] = b * c + a * s;
                }
            }
        }
    }
}

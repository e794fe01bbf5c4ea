using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Engine.Core;

namespace Engine.Kernels.Cpu;

// Token (+ learned position) embedding. The forward is a row gather; the backward scatter-adds
// rows of dout into the tables. Several rows may hit the same table row, so the backward is
// parallel over column blocks instead: each item owns columns [c0, c1) of every table row and
// walks the N rows in order, so each table element receives its rows' contributions in row order,
// whatever the thread count.
internal sealed unsafe partial class CpuAccelerator
{
    /// <summary>Columns per item of the embedding backward.</summary>
    private const long EmbeddingColumnBlock = 64;

    protected override void EmbeddingForwardCore(Tensor output, Tensor tokens, Tensor positions, Tensor wte, Tensor wpe, int n, int c)
    {
        CheckIndices(I(tokens), n, wte.Length / c, nameof(tokens));
        if (!wpe.IsEmpty)
        {
            CheckIndices(I(positions), n, wpe.Length / c, nameof(positions));
        }

        RunChunks(n, RowsPerItem(c), new EmbeddingForwardKernel
        {
            Out = F(output), Tokens = I(tokens), Positions = wpe.IsEmpty ? null : I(positions), Wte = F(wte), Wpe = F(wpe), C = c,
        });
    }

    protected override void EmbeddingBackwardCore(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens, Tensor positions, int n, int c)
    {
        CheckIndices(I(tokens), n, dwte.Length / c, nameof(tokens));
        if (!dwpe.IsEmpty)
        {
            CheckIndices(I(positions), n, dwpe.Length / c, nameof(positions));
        }

        RunChunks(c, EmbeddingColumnBlock, new EmbeddingBackwardKernel
        {
            Dwte = F(dwte), Dwpe = F(dwpe), Dout = F(dout), Tokens = I(tokens), Positions = dwpe.IsEmpty ? null : I(positions), N = n, C = c,
        });
    }

    /// <summary>Throws unless every index of ids [n] is in [0, rows): a bad id must not read or write outside a table.</summary>
    private static void CheckIndices(int* ids, int n, long rows, string name)
    {
        for (int i = 0; i < n; i++)
        {
            if ((ulong)ids[i] >= (ulong)rows)
            {
                throw new ArgumentOutOfRangeException(name, ids[i], $"{name}[{i}] = {ids[i]} is outside a table of {rows} rows");
            }
        }
    }
}

/// <summary>Embedding forward over rows: out[i, :] = wte[tokens[i], :] (+ wpe[positions[i], :]).</summary>
internal unsafe struct EmbeddingForwardKernel : IChunkKernel
{
    public float* Out;      // [N, C]
    public int* Tokens;     // [N]
    public int* Positions;  // [N], null without wpe
    public float* Wte;      // [V, C]
    public float* Wpe;      // [P, C] or null
    public int C;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        int c = C;
        for (long r = start; r < start + count; r++)
        {
            float* o = Out + r * c;
            float* t = Wte + (long)Tokens[r] * c;
            if (Positions == null)
            {
                Buffer.MemoryCopy(t, o, (long)c * sizeof(float), (long)c * sizeof(float));
                continue;
            }

            float* p = Wpe + (long)Positions[r] * c;
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                for (; j <= c - 16; j += 16)
                {
                    (Vector512.Load(t + j) + Vector512.Load(p + j)).Store(o + j);
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                for (; j <= c - 8; j += 8)
                {
                    (Vector256.Load(t + j) + Vector256.Load(p + j)).Store(o + j);
                }
            }

            for (; j < c; j++)
            {
                o[j] = t[j] + p[j];
            }
        }
    }
}

/// <summary>
/// Embedding backward over a block of columns [start, start + count): for i = 0..N-1 in order,
/// dwte[tokens[i], cols] += dout[i, cols] and dwpe[positions[i], cols] += dout[i, cols].
/// </summary>
internal unsafe struct EmbeddingBackwardKernel : IChunkKernel
{
    public float* Dwte;     // [V, C] accumulated
    public float* Dwpe;     // [P, C] accumulated, or null
    public float* Dout;     // [N, C]
    public int* Tokens;     // [N]
    public int* Positions;  // [N], null without dwpe
    public int N;
    public int C;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Run(long start, long count)
    {
        int width = (int)count;
        for (long i = 0; i < N; i++)
        {
            float* g = Dout + i * C + start;
            AddRow(Dwte + (long)Tokens[i] * C + start, g, width);
            if (Positions != null)
            {
                AddRow(Dwpe + (long)Positions[i] * C + start, g, width);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddRow(float* dst, float* src, int width)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; j <= width - 16; j += 16)
            {
                (Vector512.Load(dst + j) + Vector512.Load(src + j)).Store(dst + j);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; j <= width - 8; j += 8)
            {
                (Vector256.Load(dst + j) + Vector256.Load(src + j)).Store(dst + j);
            }
        }

        for (; j < width; j++)
        {
            dst[j] += src[j];
        }
    }
}

using System.Globalization;
using Engine.Core;

namespace Engine.Kernels.Cuda;

// Causal grouped-query attention, flash style; kernels in Kernels/Attention.cu, compiled per head
// size D (the per-query vectors live in registers), with a tile size that fits the device's
// shared memory. The backward recomputes the probabilities from the saved lse: Di = rowsum(dO o O)
// into a scratch buffer, then dK/dV (one thread per key) and dQ (one per query).
internal sealed partial class CudaAccelerator
{
    private const string AttentionFile = "Attention.cu";

    private readonly Dictionary<int, AttentionKernelSet> attentionKernels = [];
    private readonly CudaScratch attentionDi;

    protected override void AttentionForwardCore(Tensor output, Tensor lse, Tensor qkv, int b, int t, int hq, int hkv, int d, float scale)
    {
        AttentionKernelSet set = AttentionKernels(d);
        int tile = set.Tile;
        KernelArgs args = new KernelArgs(this, set.Forward, "attention_forward").Tensor(output).Tensor(lse).Tensor(qkv)
            .Int(t).Int(hq).Int(hkv).Float(scale);
        Run(args, (long)((t + tile - 1) / tile) * tile, hq, b, tile, 1, 1);
    }

    protected override void AttentionBackwardCore(Tensor dqkv, Tensor doutput, Tensor qkv, Tensor output, Tensor lse,
        int b, int t, int hq, int hkv, int d, float scale)
    {
        AttentionKernelSet set = AttentionKernels(d);
        int tile = set.Tile;
        long tiles = (t + tile - 1) / tile;
        ulong di = attentionDi.Ensure((long)b * hq * t * sizeof(float)); // [B, Hq, T]
        Run(new KernelArgs(this, set.Di, "attention_backward_di").Ptr(di).Tensor(doutput).Tensor(output).Int(t).Int(hq),
            t, hq, b, Math.Min(Wg, 32), 1, 1);
        Run(new KernelArgs(this, set.DkDv, "attention_backward_dkdv").Tensor(dqkv).Tensor(doutput).Tensor(qkv).Tensor(lse).Ptr(di)
            .Int(t).Int(hq).Int(hkv).Float(scale), tiles * tile, hkv, b, tile, 1, 1);
        Run(new KernelArgs(this, set.Dq, "attention_backward_dq").Tensor(dqkv).Tensor(doutput).Tensor(qkv).Tensor(lse).Ptr(di)
            .Int(t).Int(hq).Int(hkv).Float(scale), tiles * tile, hq, b, tile, 1, 1);
    }

    /// <summary>The attention kernels for head size <paramref name="d"/> (built on first use).</summary>
    private AttentionKernelSet AttentionKernels(int d)
    {
        if (attentionKernels.TryGetValue(d, out AttentionKernelSet? set))
        {
            return set;
        }

        // Two [tile, D] float tiles in shared memory (plus a little): the largest tile that fits.
        int tile = 32;
        while (tile > 4 && (2L * tile * d * sizeof(float) + 1024 > device.SharedMemoryBytes || tile > device.MaxThreadsPerBlock))
        {
            tile /= 2;
        }

        string opts = AttentionOptions(d, tile);
        set = new AttentionKernelSet(
            LoadFunction(AttentionFile, opts, "attention_forward"),
            LoadFunction(AttentionFile, opts, "attention_backward_di"),
            LoadFunction(AttentionFile, opts, "attention_backward_dkdv"),
            LoadFunction(AttentionFile, opts, "attention_backward_dq"),
            tile);
        attentionKernels[d] = set;
        return set;
    }

    /// <summary>The compiler options of the attention module for head size <paramref name="d"/> and a tile.</summary>
    internal static string AttentionOptions(int d, int tile) =>
        string.Create(CultureInfo.InvariantCulture, $"{BaseOptions} -DHEAD_DIM={d} -DATT_TILE={tile}");

    /// <summary>The kernels of one head size and their tile.</summary>
    private sealed record AttentionKernelSet(nint Forward, nint Di, nint DkDv, nint Dq, int Tile);
}

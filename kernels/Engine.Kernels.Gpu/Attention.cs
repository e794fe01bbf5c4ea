using Engine.Core;

namespace Engine.Kernels.Gpu;

// Causal grouped-query attention, flash style; kernels in Kernels/Attention.h, compiled per head
// size D (the per-query vectors live in private memory / registers), with a tile size that fits the
// device's local (shared) memory. The backward recomputes the probabilities from the saved lse: Di = rowsum(dO o O)
// into a scratch buffer, then dK/dV (one work-item per key) and dQ (one per query).
internal abstract partial class GpuAccelerator
{
    private readonly Dictionary<int, AttentionKernelSet> attentionKernels = [];
    private readonly Scratch attentionDi;

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
        Run(new KernelArgs(this, set.Di, "attention_backward_di").Address(di).Tensor(doutput).Tensor(output).Int(t).Int(hq),
            t, hq, b, Math.Min(Wg, 32), 1, 1);
        Run(new KernelArgs(this, set.DkDv, "attention_backward_dkdv").Tensor(dqkv).Tensor(doutput).Tensor(qkv).Tensor(lse).Address(di)
            .Int(t).Int(hq).Int(hkv).Float(scale), tiles * tile, hkv, b, tile, 1, 1);
        Run(new KernelArgs(this, set.Dq, "attention_backward_dq").Tensor(dqkv).Tensor(doutput).Tensor(qkv).Tensor(lse).Address(di)
            .Int(t).Int(hq).Int(hkv).Float(scale), tiles * tile, hq, b, tile, 1, 1);
    }

    /// <summary>The attention kernels for head size <paramref name="d"/> (built on first use).</summary>
    private AttentionKernelSet AttentionKernels(int d)
    {
        if (attentionKernels.TryGetValue(d, out AttentionKernelSet? set))
        {
            return set;
        }

        // Two [tile, D] float tiles in local memory (plus a little): the largest tile that fits.
        int tile = 32;
        while (tile > 4 && (2L * tile * d * sizeof(float) + 1024 > LocalMemoryBytes || tile > MaxWorkGroupSize))
        {
            tile /= 2;
        }

        string file = "Attention" + SourceExtension;
        string opts = AttentionBuildOptions(d, tile);
        set = new AttentionKernelSet(
            LoadKernel(file, opts, "attention_forward"),
            LoadKernel(file, opts, "attention_backward_di"),
            LoadKernel(file, opts, "attention_backward_dkdv"),
            LoadKernel(file, opts, "attention_backward_dq"),
            tile);
        attentionKernels[d] = set;
        return set;
    }

    /// <summary>The kernels of one head size and their tile.</summary>
    private sealed record AttentionKernelSet(nint Forward, nint Di, nint DkDv, nint Dq, int Tile);
}

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
        long stride = (long)(hq + (2 * hkv)) * d;
        int step = GridStep(b);
        for (int first = 0; first < b; first += step)
        {
            // Batches first .. first + nb - 1: rows first * T on, [nb, T, ...] views of every tensor.
            int nb = Math.Min(step, b - first);
            long r0 = (long)first * t, rows = (long)nb * t;
            KernelArgs args = new KernelArgs(this, set.Forward, "attention_forward").Tensor(output.Slice(r0 * hq * d, rows * hq * d))
                .Tensor(lse.Slice(r0 * hq, rows * hq)).Tensor(qkv.Slice(r0 * stride, rows * stride)).Int(t).Int(hq).Int(hkv).Float(scale);
            Run(args, (long)((t + tile - 1) / tile) * tile, hq, nb, tile, 1, 1);
        }
    }

    protected override void AttentionBackwardCore(Tensor dqkv, Tensor doutput, Tensor qkv, Tensor output, Tensor lse,
        int b, int t, int hq, int hkv, int d, float scale)
    {
        AttentionKernelSet set = AttentionKernels(d);
        int tile = set.Tile;
        long tiles = (t + tile - 1) / tile;
        long stride = (long)(hq + (2 * hkv)) * d;
        ulong di = attentionDi.Ensure((long)b * hq * t * sizeof(float)); // [B, Hq, T]; each slice's [nb, Hq, T] at the start (slices run in order)
        int step = GridStep(b);
        for (int first = 0; first < b; first += step)
        {
            int nb = Math.Min(step, b - first);
            long r0 = (long)first * t, rows = (long)nb * t;
            Tensor dqkvS = dqkv.Slice(r0 * stride, rows * stride), qkvS = qkv.Slice(r0 * stride, rows * stride);
            Tensor doutS = doutput.Slice(r0 * hq * d, rows * hq * d), outS = output.Slice(r0 * hq * d, rows * hq * d);
            Tensor lseS = lse.Slice(r0 * hq, rows * hq);
            Run(new KernelArgs(this, set.Di, "attention_backward_di").Address(di).Tensor(doutS).Tensor(outS).Int(t).Int(hq),
                t, hq, nb, Math.Min(Wg, 32), 1, 1);
            Run(new KernelArgs(this, set.DkDv, "attention_backward_dkdv").Tensor(dqkvS).Tensor(doutS).Tensor(qkvS).Tensor(lseS).Address(di)
                .Int(t).Int(hq).Int(hkv).Float(scale), tiles * tile, hkv, nb, tile, 1, 1);
            Run(new KernelArgs(this, set.Dq, "attention_backward_dq").Tensor(dqkvS).Tensor(doutS).Tensor(qkvS).Tensor(lseS).Address(di)
                .Int(t).Int(hq).Int(hkv).Float(scale), tiles * tile, hq, nb, tile, 1, 1);
        }
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

using Engine.Core;

namespace Engine.Kernels.Gpu;

// LM head fused with log-softmax (see Accelerator.TokenLogProbForward), composed like the CPU
// backend: for each block of up to RB consecutive rows,
//   logits [R, V] = x[rows] [R, C] W [V, C]^T        (gemm into a scratch buffer the accelerator keeps)
//   token_logprob_rows (Kernels/CrossEntropy.h)       one work-group per row: logp, entropy and,
//                                                      for the backward, the logit gradient in place
//   dW [V, C] += dlogits^T [V, R] x[rows] [R, C]       (gemm, beta = 1)
//   dx[rows] [R, C] = dlogits [R, V] W [V, C]          (gemm, beta = 0)
// so only [RB, V] logits exist at a time. Rows with a negative target get zero gradient rows.
internal abstract partial class GpuAccelerator
{
    private readonly Scratch headLogits;

    /// <summary>
    /// Bytes of logits the LM-head ops hold at once: a block has <c>max(1, HeadBlockBytes / (4 V))</c>
    /// rows. Larger blocks give the GEMMs more rows to work on; tests shrink it to force many blocks.
    /// </summary>
    internal long HeadBlockBytes { get; set; } = 32L << 20;

    protected override void TokenLogProbForwardCore(Tensor logp, Tensor entropy, Tensor x, Tensor w, Tensor targets, int n, int c, int v) =>
        TokenLogProb(logp, entropy, default, default, default, default, x, w, targets, n, c, v);

    protected override void TokenLogProbBackwardCore(Tensor dx, Tensor dw, Tensor dlogp, Tensor dentropy, Tensor x, Tensor w, Tensor targets,
        int n, int c, int v) =>
        TokenLogProb(default, default, dx, dw, dlogp, dentropy, x, w, targets, n, c, v);

    protected override void TokenLogProbForwardBackwardCore(Tensor logp, Tensor dx, Tensor dw, Tensor dlogp, Tensor x, Tensor w, Tensor targets,
        int n, int c, int v) =>
        TokenLogProb(logp, default, dx, dw, dlogp, default, x, w, targets, n, c, v);

    /// <summary>The blocked driver: forward outputs and the backward (dx given) in any combination.</summary>
    private void TokenLogProb(
        Tensor logp,      // [N] or empty
        Tensor entropy,   // [N] or empty
        Tensor dx,        // [N, C] or empty (no backward)
        Tensor dw,        // [V, C] accumulated
        Tensor dlogp,     // [N]
        Tensor dentropy,  // [N] or empty
        Tensor x,         // [N, C]
        Tensor w,         // [V, C]
        Tensor targets,   // [N]
        int n, int c, int v)
    {
        bool backward = !dx.IsEmpty;
        int rb = (int)Math.Clamp(HeadBlockBytes / (4L * v), 1, n);
        ulong logits = headLogits.Ensure((long)rb * v * sizeof(float)); // [RB, V]
        for (int r0 = 0; r0 < n; r0 += rb)
        {
            int count = Math.Min(rb, n - r0);
            long xRows = x.Offset + ((long)r0 * c);
            Gemm(logits, 0, Address(x), xRows, Address(w), w.Offset, count, v, c, false, true, 1f, 0f, default);
            KernelArgs rows = Args(GpuKernel.TokenLogProbRows).Address(logits).Tensor(targets).Tensor(logp).Tensor(entropy)
                .Tensor(dlogp).Tensor(dentropy).Int(r0).Int(v).Flag(!logp.IsEmpty).Flag(!entropy.IsEmpty).Flag(backward)
                .Flag(!dentropy.IsEmpty);
            Run(rows, (long)count * Wg, Wg);
            if (!backward)
            {
                continue;
            }

            Gemm(Address(dw), dw.Offset, logits, 0, Address(x), xRows, v, c, count, true, false, 1f, 1f, default);
            Gemm(Address(dx), dx.Offset + ((long)r0 * c), logits, 0, Address(w), w.Offset, count, c, v, false, false, 1f, 0f, default);
        }
    }
}

using Engine.Core;

namespace Engine.Kernels.Gpu;

// LayerNorm and RMSNorm; kernels in Kernels/Norm.h. Forward and the dx part of the backward run
// one work-group per row. dweight (and dbias) are sums over rows: rows are cut into chunks whose
// size depends on N alone, each chunk's column sums go to its own row of a scratch buffer
// [chunks, C or 2C], and the chunks are then added in order (no atomics).
internal abstract partial class GpuAccelerator
{
    /// <summary>Fewest rows in a gradient chunk.</summary>
    private const int NormMinChunkRows = 32;

    /// <summary>Most chunks.</summary>
    private const int NormMaxChunks = 256;

    private readonly Scratch normPartial;

    protected override void LayerNormForwardCore(Tensor output, Tensor mean, Tensor rstd, Tensor x, Tensor weight, Tensor bias,
        int n, int c, float eps) =>
        Run(Args(GpuKernel.LayerNormForward).Tensor(output).Tensor(mean).Tensor(rstd).Tensor(x).Tensor(weight).Tensor(bias)
            .Flag(!bias.IsEmpty).Int(c).Float(eps), (long)n * Wg, Wg);

    protected override void LayerNormBackwardCore(Tensor dx, Tensor dweight, Tensor dbias, Tensor dout, Tensor x, Tensor weight,
        Tensor mean, Tensor rstd, int n, int c)
    {
        Run(Args(GpuKernel.LayerNormBackwardDx).Tensor(dx).Tensor(dout).Tensor(x).Tensor(weight).Tensor(mean).Tensor(rstd).Int(c),
            (long)n * Wg, Wg);
        WeightGradient(dweight, dbias, dout, x, mean, rstd, n, c, isRms: false);
    }

    protected override void RmsNormForwardCore(Tensor output, Tensor rstd, Tensor x, Tensor weight, int n, int c, float eps) =>
        Run(Args(GpuKernel.RmsNormForward).Tensor(output).Tensor(rstd).Tensor(x).Tensor(weight).Int(c).Float(eps), (long)n * Wg, Wg);

    protected override void RmsNormBackwardCore(Tensor dx, Tensor dweight, Tensor dout, Tensor x, Tensor weight, Tensor rstd, int n, int c)
    {
        Run(Args(GpuKernel.RmsNormBackwardDx).Tensor(dx).Tensor(dout).Tensor(x).Tensor(weight).Tensor(rstd).Int(c), (long)n * Wg, Wg);
        WeightGradient(dweight, default, dout, x, default, rstd, n, c, isRms: true);
    }

    /// <summary>dweight [C] += sum over rows of dout * xhat; dbias [C] += sum of dout (when given): chunk partials, then an ordered reduce.</summary>
    private void WeightGradient(Tensor dweight, Tensor dbias, Tensor dout, Tensor x, Tensor mean, Tensor rstd, int n, int c, bool isRms)
    {
        int chunkRows = Math.Max(NormMinChunkRows, (n + NormMaxChunks - 1) / NormMaxChunks);
        int chunks = (n + chunkRows - 1) / chunkRows;
        bool hasBias = !dbias.IsEmpty;
        int stride = hasBias ? 2 * c : c;  // partial row: [dweight C | dbias C]
        ulong partial = normPartial.Ensure((long)chunks * stride * sizeof(float));
        Run(Args(GpuKernel.NormWeightPartials).Address(partial).Tensor(dout).Tensor(x).Tensor(mean).Tensor(rstd)
            .Flag(isRms).Flag(hasBias).Int(n).Int(c).Int(chunkRows).Int(stride), c, chunks, Math.Min(Wg, 64), 1);
        Run(Args(GpuKernel.NormColumnReduce).Address(partial).Tensor(dweight).Tensor(dbias).Int(chunks).Int(stride).Int(c),
            stride, Math.Min(Wg, 64));
    }
}

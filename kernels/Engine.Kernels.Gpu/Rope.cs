using Engine.Core;

namespace Engine.Kernels.Gpu;

// Rotary position embedding in place (HF rotate-half pairing); kernel in Kernels/Rope.h. The
// backward is the same kernel with the sine negated.
internal abstract partial class GpuAccelerator
{
    protected override void RopeCore(Tensor x, Tensor positions, Tensor cos, Tensor sin, int n, int rowStride, int firstHead, int heads,
        int d, bool inverse)
    {
        int half = d / 2;
        long tablePositions = Math.Min(cos.Length, sin.Length) / half;
        KernelArgs args = Args(GpuKernel.Rope).Tensor(x).Tensor(positions).Tensor(cos).Tensor(sin)
            .Int(n).Int(rowStride).Int(firstHead).Int(heads).Int(d).Float(inverse ? -1f : 1f).Long(tablePositions);
        int local = Math.Min(Wg, 32);
        Run(args, half, heads, GridRows(n), local, 1, 1);
    }
}

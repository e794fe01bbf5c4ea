using Engine.Core;

namespace Engine.Kernels.Cpu;

internal sealed unsafe partial class CpuAccelerator
{
    protected override void RopeCore(Tensor x, Tensor positions, Tensor cos, Tensor sin, int n, int rowStride, int firstHead, int heads, int d, bool inverse) =>
        throw new NotSupportedException("pending");
}

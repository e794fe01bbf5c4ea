namespace Engine.Core;

internal abstract partial class Accelerator
{
    /// <summary>
    /// Rotary position embedding in place, with HF's rotate-half pairing: element j of a head is
    /// rotated with element j + D/2 by the angle of (position, j):
    /// <c>x1' = x1 cos - x2 sin; x2' = x2 cos + x1 sin</c>.
    /// </summary>
    /// <param name="x">[N, rowStride] rows holding heads of size D side by side (e.g. the fused qkv rows).</param>
    /// <param name="positions">[N] position of each row.</param>
    /// <param name="cos">[P, D/2] cosines by position and frequency.</param>
    /// <param name="sin">[P, D/2] sines.</param>
    /// <param name="n">Rows.</param>
    /// <param name="rowStride">Elements per row of <paramref name="x"/>.</param>
    /// <param name="firstHead">First head (in units of D within a row) to rotate.</param>
    /// <param name="heads">Number of consecutive heads to rotate (query and key heads together).</param>
    /// <param name="d">Head size D (even).</param>
    public void RopeForward(Tensor x, Tensor positions, Tensor cos, Tensor sin, int n, int rowStride, int firstHead, int heads, int d)
    {
        CheckRope(x, positions, cos, sin, n, rowStride, firstHead, heads, d);
        using (Profile("Rope"))
        {
            RopeCore(x, positions, cos, sin, n, rowStride, firstHead, heads, d, inverse: false);
        }
    }

    /// <summary>
    /// RoPE backward in place on the gradient: the transpose (inverse) rotation,
    /// <c>dx1 = dy1 cos + dy2 sin; dx2 = dy2 cos - dy1 sin</c>.
    /// </summary>
    public void RopeBackward(Tensor dx, Tensor positions, Tensor cos, Tensor sin, int n, int rowStride, int firstHead, int heads, int d)
    {
        CheckRope(dx, positions, cos, sin, n, rowStride, firstHead, heads, d);
        using (Profile("Rope"))
        {
            RopeCore(dx, positions, cos, sin, n, rowStride, firstHead, heads, d, inverse: true);
        }
    }

    /// <summary>Rotates by +angle (forward) or -angle (<paramref name="inverse"/>, the backward).</summary>
    protected abstract void RopeCore(Tensor x, Tensor positions, Tensor cos, Tensor sin, int n, int rowStride, int firstHead, int heads, int d, bool inverse);

    private void CheckRope(Tensor x, Tensor positions, Tensor cos, Tensor sin, int n, int rowStride, int firstHead, int heads, int d)
    {
        CheckPositive(n, nameof(n));
        CheckPositive(d, nameof(d));
        CheckPositive(heads, nameof(heads));
        if (d % 2 != 0)
        {
            throw new ArgumentException($"RoPE needs an even head size, got {d}", nameof(d));
        }

        if (firstHead < 0 || (long)(firstHead + heads) * d > rowStride)
        {
            throw new ArgumentException($"heads [{firstHead}, {firstHead + heads}) of size {d} do not fit a row of {rowStride}");
        }

        Check(x, nameof(x), minLength: (long)n * rowStride);
        Check(positions, nameof(positions), DType.I32, n);
        Check(cos, nameof(cos), minLength: d / 2);
        Check(sin, nameof(sin), minLength: d / 2);
    }
}

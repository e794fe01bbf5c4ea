namespace Engine.Core;

internal abstract partial class Accelerator
{
    /// <summary>GELU, tanh form (GPT-2's <c>gelu_new</c>): <c>y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))</c>.</summary>
    public void GeluForward(Tensor y, Tensor x, long n)
    {
        CheckPositive(n, nameof(n));
        Check(y, nameof(y), minLength: n);
        Check(x, nameof(x), minLength: n);
        using (Profile("GeluForward"))
        {
            GeluForwardCore(y, x, n);
        }
    }

    /// <summary>GELU backward: <c>dx = dy * gelu'(x)</c> (written, not accumulated; dx may alias dy).</summary>
    public void GeluBackward(Tensor dx, Tensor dy, Tensor x, long n)
    {
        CheckPositive(n, nameof(n));
        Check(dx, nameof(dx), minLength: n);
        Check(dy, nameof(dy), minLength: n);
        Check(x, nameof(x), minLength: n);
        using (Profile("GeluBackward"))
        {
            GeluBackwardCore(dx, dy, x, n);
        }
    }

    /// <summary>
    /// SwiGLU: <c>y[i,j] = silu(g[i,j]) * u[i,j]</c> where each row of <paramref name="gateUp"/>
    /// [N, 2F] holds the gate projection (first F) then the up projection (last F).
    /// </summary>
    public void SwiGluForward(Tensor y, Tensor gateUp, int n, int f)
    {
        CheckPositive(n, nameof(n));
        CheckPositive(f, nameof(f));
        Check(y, nameof(y), minLength: (long)n * f);
        Check(gateUp, nameof(gateUp), minLength: 2L * n * f);
        using (Profile("SwiGluForward"))
        {
            SwiGluForwardCore(y, gateUp, n, f);
        }
    }

    /// <summary>SwiGLU backward: writes <c>dGateUp</c> [N, 2F] from <c>dy</c> [N, F].</summary>
    public void SwiGluBackward(Tensor dGateUp, Tensor dy, Tensor gateUp, int n, int f)
    {
        CheckPositive(n, nameof(n));
        CheckPositive(f, nameof(f));
        Check(dGateUp, nameof(dGateUp), minLength: 2L * n * f);
        Check(dy, nameof(dy), minLength: (long)n * f);
        Check(gateUp, nameof(gateUp), minLength: 2L * n * f);
        using (Profile("SwiGluBackward"))
        {
            SwiGluBackwardCore(dGateUp, dy, gateUp, n, f);
        }
    }

    /// <summary>Residual add <c>y = a + b</c>; <paramref name="y"/> may alias either input.</summary>
    public void Add(Tensor y, Tensor a, Tensor b, long n)
    {
        CheckPositive(n, nameof(n));
        Check(y, nameof(y), minLength: n);
        Check(a, nameof(a), minLength: n);
        Check(b, nameof(b), minLength: n);
        using (Profile("Add"))
        {
            AddCore(y, a, b, n);
        }
    }

    /// <summary>Scales in place: <c>x *= s</c>.</summary>
    public void Scale(Tensor x, float s, long n)
    {
        CheckPositive(n, nameof(n));
        Check(x, nameof(x), minLength: n);
        using (Profile("Scale"))
        {
            ScaleCore(x, s, n);
        }
    }

    protected abstract void GeluForwardCore(Tensor y, Tensor x, long n);

    protected abstract void GeluBackwardCore(Tensor dx, Tensor dy, Tensor x, long n);

    protected abstract void SwiGluForwardCore(Tensor y, Tensor gateUp, int n, int f);

    protected abstract void SwiGluBackwardCore(Tensor dGateUp, Tensor dy, Tensor gateUp, int n, int f);

    protected abstract void AddCore(Tensor y, Tensor a, Tensor b, long n);

    protected abstract void ScaleCore(Tensor x, float s, long n);
}

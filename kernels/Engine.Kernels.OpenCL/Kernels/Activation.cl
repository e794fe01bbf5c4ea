// Activation.cl: GELU (tanh form), SwiGLU, residual add, scale. Element-wise, grid-stride loops
// (the host caps the global size); every output element is written by one work-item.

#define GELU_K 0.7978845608028654f          // sqrt(2/pi)
#define GELU_KA (GELU_K * 0.044715f)
#define GELU_3KA (3.0f * GELU_KA)
// Beyond |x| = 10 the derivative is 0 or 1 to float precision, and inside exp(-2u) stays finite.
#define GELU_XCAP 10.0f
// Lower clamp of the SwiGLU gate in the backward: both terms are below 1e-32 there and exp(-g) is finite.
#define SWIGLU_GATE_FLOOR -80.0f

// y = gelu(x) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): equal to 0.5 x (1 + tanh u)
// without the cancellation of 1 + tanh u for negative u.
__kernel void gelu_forward(__global float* y, ulong yOff,          // [n]
                           __global const float* x, ulong xOff,    // [n]
                           long n)
{
    y += yOff;
    x += xOff;
    for (long i = get_global_id(0); i < n; i += get_global_size(0))
    {
        const float v = x[i];
        const float u = v * fma(v * v, GELU_KA, GELU_K);
        y[i] = v / (1.0f + exp(-2.0f * u));
    }
}

// dx = dy * gelu'(x), gelu'(x) = s + 2 x s (1 - s) u' with s = sigmoid(2u), 1 - s = e s
// (e = exp(-2u)) and u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2). dx may alias dy.
__kernel void gelu_backward(__global float* dx, ulong dxOff,        // [n]
                            __global const float* dy, ulong dyOff,  // [n]
                            __global const float* x, ulong xOff,    // [n]
                            long n)
{
    dx += dxOff;
    dy += dyOff;
    x += xOff;
    for (long i = get_global_id(0); i < n; i += get_global_size(0))
    {
        const float v = clamp(x[i], -GELU_XCAP, GELU_XCAP);
        const float v2 = v * v;
        const float u = v * fma(v2, GELU_KA, GELU_K);
        const float e = exp(-2.0f * u);
        const float s = 1.0f / (1.0f + e);
        const float du = fma(v2, GELU_3KA, GELU_K);
        dx[i] = dy[i] * (s + 2.0f * v * s * (e * s) * du);
    }
}

// y[i, j] = silu(g) * u with gateUp [N, 2F] = [gate F | up F]; global (F, N).
__kernel void swiglu_forward(__global float* y, ulong yOff,              // [N, F]
                             __global const float* gateUp, ulong guOff,  // [N, 2F]
                             int n, int f)
{
    const int j = get_global_id(0), r = get_global_id(1);
    if (j >= f || r >= n)
    {
        return;
    }
    __global const float* g = gateUp + guOff + (long)r * 2 * f;
    const float gv = g[j];
    const float s = 1.0f / (1.0f + exp(-gv));
    y[yOff + (long)r * f + j] = gv * s * g[f + j];
}

// dGateUp [N, 2F] from dy [N, F]: d gate = dy * up * s (1 + g (1 - s)), d up = dy * g * s, with
// s = 1 / (1 + e), e = exp(-g), 1 - s = e s; g raised to at least SWIGLU_GATE_FLOOR. Global (F, N).
__kernel void swiglu_backward(__global float* dGateUp, ulong dguOff,     // [N, 2F]
                              __global const float* dy, ulong dyOff,     // [N, F]
                              __global const float* gateUp, ulong guOff, // [N, 2F]
                              int n, int f)
{
    const int j = get_global_id(0), r = get_global_id(1);
    if (j >= f || r >= n)
    {
        return;
    }
    __global const float* g = gateUp + guOff + (long)r * 2 * f;
    __global float* dg = dGateUp + dguOff + (long)r * 2 * f;
    const float gj = fmax(g[j], SWIGLU_GATE_FLOOR);
    const float e = exp(-gj);
    const float s = 1.0f / (1.0f + e);
    const float ds = s * fma(gj, e * s, 1.0f);
    const float upj = g[f + j], dyj = dy[dyOff + (long)r * f + j];
    dg[j] = dyj * upj * ds;
    dg[f + j] = dyj * (gj * s);
}

// y = a + b; y may alias a or b (each element is read before it is written, by one work-item).
__kernel void add(__global float* y, ulong yOff,
                  __global const float* a, ulong aOff,
                  __global const float* b, ulong bOff,
                  long n)
{
    y += yOff;
    a += aOff;
    b += bOff;
    for (long i = get_global_id(0); i < n; i += get_global_size(0))
    {
        y[i] = a[i] + b[i];
    }
}

// x *= s.
__kernel void scale(__global float* x, ulong xOff, float s, long n)
{
    x += xOff;
    for (long i = get_global_id(0); i < n; i += get_global_size(0))
    {
        x[i] *= s;
    }
}

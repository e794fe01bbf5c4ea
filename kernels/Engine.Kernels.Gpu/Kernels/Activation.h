// Activation.h: GELU (tanh form), SwiGLU, residual add, scale. Element-wise, grid-stride loops
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
KERNEL void gelu_forward(GLOBAL float* y, u64 yOff,       // [n]
                         GLOBAL const float* x, u64 xOff, // [n]
                         i64 n)
{
    y += yOff;
    x += xOff;
    for (i64 i = GLOBAL_ID(0); i < n; i += GLOBAL_SIZE(0))
    {
        const float v = x[i];
        const float u = v * fma(v * v, GELU_KA, GELU_K);
        y[i] = v / (1.0f + exp(-2.0f * u));
    }
}

// dx = dy * gelu'(x), gelu'(x) = s + 2 x s (1 - s) u' with s = sigmoid(2u), 1 - s = e s
// (e = exp(-2u)) and u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2). dx may alias dy.
KERNEL void gelu_backward(GLOBAL float* dx, u64 dxOff,       // [n]
                          GLOBAL const float* dy, u64 dyOff, // [n]
                          GLOBAL const float* x, u64 xOff,   // [n]
                          i64 n)
{
    dx += dxOff;
    dy += dyOff;
    x += xOff;
    for (i64 i = GLOBAL_ID(0); i < n; i += GLOBAL_SIZE(0))
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

// y[i, j] = silu(g) * u with gateUp [N, 2F] = [gate F | up F]; global (F, N), rows looped.
KERNEL void swiglu_forward(GLOBAL float* y, u64 yOff,             // [N, F]
                           GLOBAL const float* gateUp, u64 guOff, // [N, 2F]
                           int n, int f)
{
    const int j = GLOBAL_ID(0);
    if (j >= f)
    {
        return;
    }
    for (int r = GLOBAL_ID(1); r < n; r += GLOBAL_SIZE(1))
    {
        GLOBAL const float* g = gateUp + guOff + (i64)r * 2 * f;
        const float gv = g[j];
        const float s = 1.0f / (1.0f + exp(-gv));
        y[yOff + (i64)r * f + j] = gv * s * g[f + j];
    }
}

// dGateUp [N, 2F] from dy [N, F]: d gate = dy * up * s (1 + g (1 - s)), d up = dy * g * s, with
// s = 1 / (1 + e), e = exp(-g), 1 - s = e s; g raised to at least SWIGLU_GATE_FLOOR. Global (F, N),
// rows looped.
KERNEL void swiglu_backward(GLOBAL float* dGateUp, u64 dguOff,     // [N, 2F]
                            GLOBAL const float* dy, u64 dyOff,     // [N, F]
                            GLOBAL const float* gateUp, u64 guOff, // [N, 2F]
                            int n, int f)
{
    const int j = GLOBAL_ID(0);
    if (j >= f)
    {
        return;
    }
    for (int r = GLOBAL_ID(1); r < n; r += GLOBAL_SIZE(1))
    {
        GLOBAL const float* g = gateUp + guOff + (i64)r * 2 * f;
        GLOBAL float* dg = dGateUp + dguOff + (i64)r * 2 * f;
        const float gj = fmax(g[j], SWIGLU_GATE_FLOOR);
        const float e = exp(-gj);
        const float s = 1.0f / (1.0f + e);
        const float ds = s * fma(gj, e * s, 1.0f);
        const float upj = g[f + j], dyj = dy[dyOff + (i64)r * f + j];
        dg[j] = dyj * upj * ds;
        dg[f + j] = dyj * (gj * s);
    }
}

// y = a + b; y may alias a or b (each element is read before it is written, by one work-item).
KERNEL void add(GLOBAL float* y, u64 yOff,
                GLOBAL const float* a, u64 aOff,
                GLOBAL const float* b, u64 bOff,
                i64 n)
{
    y += yOff;
    a += aOff;
    b += bOff;
    for (i64 i = GLOBAL_ID(0); i < n; i += GLOBAL_SIZE(0))
    {
        y[i] = a[i] + b[i];
    }
}

// x *= s.
KERNEL void scale(GLOBAL float* x, u64 xOff, float s, i64 n)
{
    x += xOff;
    for (i64 i = GLOBAL_ID(0); i < n; i += GLOBAL_SIZE(0))
    {
        x[i] *= s;
    }
}

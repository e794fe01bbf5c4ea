// Rope.h: rotary position embedding in place, HF rotate-half pairing. Element j of a head pairs
// with j + D/2; both rotate by the angle of (positions[row], j):
//   x1' = x1 c - x2 s,  x2' = x2 c + x1 s,  c = cos[p, j], s = sign * sin[p, j].
// sign = -1 is the backward (the transpose rotation). A position outside the tables writes NaN
// into the pair (the CPU backend throws on the host instead). Global (D/2, heads, N), rows looped.
KERNEL void rope(GLOBAL float* x, u64 xOff,               // [N, rowStride]
                 GLOBAL const int* positions, u64 posOff, // [N]
                 GLOBAL const float* cosT, u64 cosOff,    // [P, D/2]
                 GLOBAL const float* sinT, u64 sinOff,    // [P, D/2]
                 int n, int rowStride, int firstHead, int heads, int d, float sign, i64 tablePositions)
{
    const int hd = d / 2;
    const int j = GLOBAL_ID(0), h = GLOBAL_ID(1);
    if (j >= hd || h >= heads)
    {
        return;
    }
    for (int r = GLOBAL_ID(2); r < n; r += GLOBAL_SIZE(2))
    {
        GLOBAL float* x1 = x + xOff + (i64)r * rowStride + (i64)(firstHead + h) * d + j;
        GLOBAL float* x2 = x1 + hd;
        const int p = positions[posOff + r];
        if (p < 0 || p >= tablePositions)
        {
            *x1 = NAN;
            *x2 = NAN;
            continue;
        }
        const float c = cosT[cosOff + (i64)p * hd + j];
        const float s = sinT[sinOff + (i64)p * hd + j] * sign;
        const float a = *x1, b = *x2;
        *x1 = a * c - b * s;
        *x2 = b * c + a * s;
    }
}

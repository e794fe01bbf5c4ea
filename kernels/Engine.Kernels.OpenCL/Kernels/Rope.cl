// Rope.cl: rotary position embedding in place, HF rotate-half pairing. Element j of a head pairs
// with j + D/2; both rotate by the angle of (positions[row], j):
//   x1' = x1 c - x2 s,  x2' = x2 c + x1 s,  c = cos[p, j], s = sign * sin[p, j].
// sign = -1 is the backward (the transpose rotation). A position outside the tables writes NaN
// into the pair (the CPU backend throws on the host instead). Global (D/2, heads, N).
__kernel void rope(__global float* x, ulong xOff,                 // [N, rowStride]
                   __global const int* positions, ulong posOff,   // [N]
                   __global const float* cosT, ulong cosOff,      // [P, D/2]
                   __global const float* sinT, ulong sinOff,      // [P, D/2]
                   int n, int rowStride, int firstHead, int heads, int d, float sign, long tablePositions)
{
    const int hd = d / 2;
    const int j = get_global_id(0), h = get_global_id(1), r = get_global_id(2);
    if (j >= hd || h >= heads || r >= n)
    {
        return;
    }
    __global float* x1 = x + xOff + (long)r * rowStride + (long)(firstHead + h) * d + j;
    __global float* x2 = x1 + hd;
    const int p = positions[posOff + r];
    if (p < 0 || p >= tablePositions)
    {
        *x1 = NAN;
        *x2 = NAN;
        return;
    }
    const float c = cosT[cosOff + (long)p * hd + j];
    const float s = sinT[sinOff + (long)p * hd + j] * sign;
    const float a = *x1, b = *x2;
    *x1 = a * c - b * s;
    *x2 = b * c + a * s;
}

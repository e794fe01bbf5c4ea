using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Kernels.Cpu;

/// <summary>Packing routines and register-tile micro-kernels of the packed GEMM path.</summary>
internal static unsafe partial class CpuGemm
{
    /// <summary>
    /// Packs <paramref name="kc"/> rows of <paramref name="count"/> contiguous floats (row stride
    /// <paramref name="ld"/>) into ceil(count / width) panels dst[panel][kc][width], zero-padding
    /// the last panel. Each source row is read once, left to right, across all the panels.
    /// Used for A when transA (rows of A^T are contiguous in m) and for B when not transB.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackRows(float* dst, float* src, long ld, int count, int kc, int width)
    {
        long panelStride = (long)kc * width;
        int full = count / width;
        int rest = count - full * width;
        for (int q = 0; q < kc; q++, src += ld)
        {
            float* s = src;
            float* d = dst + (long)q * width;
            for (int p = 0; p < full; p++, s += width, d += panelStride)
            {
                CopyRow(d, s, width);
            }

            if (rest > 0)
            {
                int t = 0;
                for (; t < rest; t++)
                {
                    d[t] = s[t];
                }

                for (; t < width; t++)
                {
                    d[t] = 0f;
                }
            }
        }
    }

    /// <summary>Copies one packed row of <paramref name="width"/> floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRow(float* d, float* s, int width)
    {
        if (width == 32 && Vector512.IsHardwareAccelerated)
        {
            Vector512.Store(Vector512.Load(s), d);
            Vector512.Store(Vector512.Load(s + 16), d + 16);
        }
        else if (width == 12 && Vector256.IsHardwareAccelerated)
        {
            Vector256.Store(Vector256.Load(s), d);
            Vector128.Store(Vector128.Load(s + 8), d + 8);
        }
        else if (width == 16 && Vector256.IsHardwareAccelerated)
        {
            Vector256.Store(Vector256.Load(s), d);
            Vector256.Store(Vector256.Load(s + 8), d + 8);
        }
        else
        {
            for (int t = 0; t < width; t++)
            {
                d[t] = s[t];
            }
        }
    }

    /// <summary>
    /// Packs <paramref name="count"/> (at most <paramref name="width"/>) rows of <paramref name="kc"/>
    /// contiguous floats (row stride <paramref name="ld"/>) transposed into dst[kc, width],
    /// zero-padding columns count..width. Used for A when not transA and for B when transB.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackTransposed(float* dst, float* src, long ld, int count, int kc, int width)
    {
        int t = 0;
        int kc8 = kc & ~7;
        if (Avx.IsSupported)
        {
            // 8 source rows x 8 columns at a time, then 4 x 8, transposed in registers.
            for (; t + 8 <= count; t += 8)
            {
                float* s = src + t * ld;
                for (int q = 0; q < kc8; q += 8)
                {
                    Transpose8x8(s + q, ld, dst + (long)q * width + t, width);
                }
            }

            for (; t + 4 <= count; t += 4)
            {
                float* s = src + t * ld;
                for (int q = 0; q < kc8; q += 8)
                {
                    Transpose4x8(s + q, ld, dst + (long)q * width + t, width);
                }
            }

            // The columns past the last multiple of 8 for the rows done above.
            for (int q = kc8; q < kc; q++)
            {
                for (int r = 0; r < t; r++)
                {
                    dst[(long)q * width + r] = src[r * ld + q];
                }
            }
        }

        for (; t < count; t++)
        {
            float* s = src + t * ld;
            float* d = dst + t;
            for (int q = 0; q < kc; q++, d += width)
            {
                *d = s[q];
            }
        }

        for (; t < width; t++)
        {
            float* d = dst + t;
            for (int q = 0; q < kc; q++, d += width)
            {
                *d = 0f;
            }
        }
    }

    /// <summary>dst[c * ldd + r] = src[r * lds + c] for a 4 x 8 block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x8(float* src, long lds, float* dst, long ldd) =>
        Transpose4x8(Avx.LoadVector256(src), Avx.LoadVector256(src + lds), Avx.LoadVector256(src + 2 * lds),
            Avx.LoadVector256(src + 3 * lds), dst, ldd);

    /// <summary>The same for four rows of 8 already in registers (row r in <paramref name="r0"/> .. <paramref name="r3"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x8(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3,
        float* dst, long ldd)
    {
        Vector256<float> t0 = Avx.UnpackLow(r0, r1);
        Vector256<float> t1 = Avx.UnpackHigh(r0, r1);
        Vector256<float> t2 = Avx.UnpackLow(r2, r3);
        Vector256<float> t3 = Avx.UnpackHigh(r2, r3);
        // u0 = columns 0 | 4, u1 = 1 | 5, u2 = 2 | 6, u3 = 3 | 7 (each half: rows 0..3).
        Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44);
        Vector256<float> u1 = Avx.Shuffle(t0, t2, 0xEE);
        Vector256<float> u2 = Avx.Shuffle(t1, t3, 0x44);
        Vector256<float> u3 = Avx.Shuffle(t1, t3, 0xEE);
        u0.GetLower().Store(dst);
        u1.GetLower().Store(dst + ldd);
        u2.GetLower().Store(dst + 2 * ldd);
        u3.GetLower().Store(dst + 3 * ldd);
        u0.GetUpper().Store(dst + 4 * ldd);
        u1.GetUpper().Store(dst + 5 * ldd);
        u2.GetUpper().Store(dst + 6 * ldd);
        u3.GetUpper().Store(dst + 7 * ldd);
    }

    /// <summary>dst[c * ldd + r] = src[r * lds + c] for an 8 x 8 block (unpack, shuffle, lane swap).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* src, long lds, float* dst, long ldd)
    {
        Vector256<float> r0 = Avx.LoadVector256(src);
        Vector256<float> r1 = Avx.LoadVector256(src + lds);
        Vector256<float> r2 = Avx.LoadVector256(src + 2 * lds);
        Vector256<float> r3 = Avx.LoadVector256(src + 3 * lds);
        Vector256<float> r4 = Avx.LoadVector256(src + 4 * lds);
        Vector256<float> r5 = Avx.LoadVector256(src + 5 * lds);
        Vector256<float> r6 = Avx.LoadVector256(src + 6 * lds);
        Vector256<float> r7 = Avx.LoadVector256(src + 7 * lds);
        // Stage 1: interleave pairs of rows.
        Vector256<float> t0 = Avx.UnpackLow(r0, r1);
        Vector256<float> t1 = Avx.UnpackHigh(r0, r1);
        Vector256<float> t2 = Avx.UnpackLow(r2, r3);
        Vector256<float> t3 = Avx.UnpackHigh(r2, r3);
        Vector256<float> t4 = Avx.UnpackLow(r4, r5);
        Vector256<float> t5 = Avx.UnpackHigh(r4, r5);
        Vector256<float> t6 = Avx.UnpackLow(r6, r7);
        Vector256<float> t7 = Avx.UnpackHigh(r6, r7);
        // Stage 2: gather groups of four.
        Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44);
        Vector256<float> u1 = Avx.Shuffle(t0, t2, 0xEE);
        Vector256<float> u2 = Avx.Shuffle(t1, t3, 0x44);
        Vector256<float> u3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44);
        Vector256<float> u5 = Avx.Shuffle(t4, t6, 0xEE);
        Vector256<float> u6 = Avx.Shuffle(t5, t7, 0x44);
        Vector256<float> u7 = Avx.Shuffle(t5, t7, 0xEE);
        // Stage 3: swap 128-bit halves.
        Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(dst + ldd, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(dst + 2 * ldd, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(dst + 3 * ldd, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(dst + 4 * ldd, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(dst + 5 * ldd, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(dst + 6 * ldd, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(dst + 7 * ldd, Avx.Permute2x128(u3, u7, 0x31));
    }

    /// <summary>Vector512 write-back of one 16-wide accumulator: C = alpha * acc + beta * C + bias.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* c, Vector512<float> acc, Vector512<float> alpha, Vector512<float> beta, bool readC,
        float* bias)
    {
        Vector512<float> v = readC ? Vector512.FusedMultiplyAdd(acc, alpha, Vector512.Load(c) * beta) : acc * alpha;
        if (bias != null)
        {
            v += Vector512.Load(bias);
        }

        v.Store(c);
    }

    /// <summary>Vector256 write-back of one 8-wide accumulator: C = alpha * acc + beta * C + bias.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* c, Vector256<float> acc, Vector256<float> alpha, Vector256<float> beta, bool readC,
        float* bias)
    {
        Vector256<float> v = readC ? Vector256.FusedMultiplyAdd(acc, alpha, Vector256.Load(c) * beta) : acc * alpha;
        if (bias != null)
        {
            v += Vector256.Load(bias);
        }

        v.Store(c);
    }

    /// <summary>
    /// 12 x 32 Vector512 micro-kernel: C[12, 32] (op)= packed A[kc][12] x packed B[kc][32], 24 zmm
    /// accumulators, one broadcast of A and two loads of B per step of k. A partial tile
    /// (rows &lt; 12 or cols &lt; 32) is computed in full on the zero padding, stored to
    /// <paramref name="tile"/> and written back element by element.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Kernel12x32(float* a, float* b, int kc, float* c, long ldc, int rows, int cols,
        float alpha, float beta, float* bias, float* tile)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default, c80 = default, c81 = default;
        Vector512<float> c90 = default, c91 = default, ca0 = default, ca1 = default, cb0 = default, cb1 = default;
        if (Sse.IsSupported)
        {
            // The tile of C is read or written after the k loop; start bringing its lines in now.
            float* pc = c;
            for (int ii = 0; ii < rows; ii++, pc += ldc)
            {
                Sse.Prefetch0(pc);
                Sse.Prefetch0(pc + 31);
            }
        }

        for (int p = 0; p < kc; p++, a += 12, b += 32)
        {
            Vector512<float> b0 = Vector512.Load(b);
            Vector512<float> b1 = Vector512.Load(b + 16);
            Vector512<float> t = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(t, b0, c00);
            c01 = Vector512.FusedMultiplyAdd(t, b1, c01);
            t = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(t, b0, c10);
            c11 = Vector512.FusedMultiplyAdd(t, b1, c11);
            t = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(t, b0, c20);
            c21 = Vector512.FusedMultiplyAdd(t, b1, c21);
            t = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(t, b0, c30);
            c31 = Vector512.FusedMultiplyAdd(t, b1, c31);
            t = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(t, b0, c40);
            c41 = Vector512.FusedMultiplyAdd(t, b1, c41);
            t = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(t, b0, c50);
            c51 = Vector512.FusedMultiplyAdd(t, b1, c51);
            t = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(t, b0, c60);
            c61 = Vector512.FusedMultiplyAdd(t, b1, c61);
            t = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(t, b0, c70);
            c71 = Vector512.FusedMultiplyAdd(t, b1, c71);
            t = Vector512.Create(a[8]);
            c80 = Vector512.FusedMultiplyAdd(t, b0, c80);
            c81 = Vector512.FusedMultiplyAdd(t, b1, c81);
            t = Vector512.Create(a[9]);
            c90 = Vector512.FusedMultiplyAdd(t, b0, c90);
            c91 = Vector512.FusedMultiplyAdd(t, b1, c91);
            t = Vector512.Create(a[10]);
            ca0 = Vector512.FusedMultiplyAdd(t, b0, ca0);
            ca1 = Vector512.FusedMultiplyAdd(t, b1, ca1);
            t = Vector512.Create(a[11]);
            cb0 = Vector512.FusedMultiplyAdd(t, b0, cb0);
            cb1 = Vector512.FusedMultiplyAdd(t, b1, cb1);
        }

        bool edge = rows < 12 || cols < 32;
        float* d = edge ? tile : c;
        long ld = edge ? 32 : ldc;
        bool readC = !edge && beta != 0;
        float* bs = edge ? null : bias;
        Vector512<float> va = Vector512.Create(edge ? 1f : alpha);
        Vector512<float> vb = Vector512.Create(beta);
        Put(d, c00, va, vb, readC, bs);
        Put(d + 16, c01, va, vb, readC, bs == null ? null : bs + 16);
        d += ld;
        Put(d, c10, va, vb, readC, bs);
        Put(d + 16, c11, va, vb, readC, bs == null ? null : bs + 16);
        d += ld;
        Put(d, c20, va, vb, readC, bs);
        Put(d + 16, c21, va, vb, readC, bs == null ? null : bs + 16);
        d += ld;
        Put(d, c30, va, vb, readC, bs);
        Put(d + 16, c31, va, vb, readC, bs == null ? null : bs + 16);
        d += ld;
        Put(d, c40, va, vb, readC, bs);
        Put(d + 16, c41, va, vb, readC, bs == null ? null : bs + 16);
        d += ld;
        Put(d, c50, va, vb, readC, bs);
        Put(d + 16, c51, va, vb, readC, bs == null ? null : bs + 16);
        d += ld;
        Put(d, c60, va, vb, readC, bs);
        Put(d + 16, c61, va, vb, readC, bs == null ? null : bs + 16);
        d += ld;
        Put(d, c70, va, vb, readC, bs);
        Put(d + 16, c71, va, vb, readC, bs == null ? null : bs + 16);
        d += ld;
        Put(d, c80, va, vb, readC, bs);
        Put(d + 16, c81, va, vb, readC, bs == null ? null : bs + 16);
        d += ld;
        Put(d, c90, va, vb, readC, bs);
        Put(d + 16, c91, va, vb, readC, bs == null ? null : bs + 16);
        d += ld;
        Put(d, ca0, va, vb, readC, bs);
        Put(d + 16, ca1, va, vb, readC, bs == null ? null : bs + 16);
        d += ld;
        Put(d, cb0, va, vb, readC, bs);
        Put(d + 16, cb1, va, vb, readC, bs == null ? null : bs + 16);
        if (edge)
        {
            WriteTile(tile, 32, c, ldc, rows, cols, alpha, beta, bias);
        }
    }

    /// <summary>6 x 16 Vector256 micro-kernel (12 ymm accumulators); same contract as <see cref="Kernel12x32"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Kernel6x16(float* a, float* b, int kc, float* c, long ldc, int rows, int cols,
        float alpha, float beta, float* bias, float* tile)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++, a += 6, b += 16)
        {
            Vector256<float> b0 = Vector256.Load(b);
            Vector256<float> b1 = Vector256.Load(b + 8);
            Vector256<float> t = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(t, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(t, b1, c01);
            t = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(t, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(t, b1, c11);
            t = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(t, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(t, b1, c21);
            t = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(t, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(t, b1, c31);
            t = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(t, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(t, b1, c41);
            t = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(t, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(t, b1, c51);
        }

        bool edge = rows < 6 || cols < 16;
        float* d = edge ? tile : c;
        long ld = edge ? 16 : ldc;
        bool readC = !edge && beta != 0;
        float* bs = edge ? null : bias;
        Vector256<float> va = Vector256.Create(edge ? 1f : alpha);
        Vector256<float> vb = Vector256.Create(beta);
        Put(d, c00, va, vb, readC, bs);
        Put(d + 8, c01, va, vb, readC, bs == null ? null : bs + 8);
        d += ld;
        Put(d, c10, va, vb, readC, bs);
        Put(d + 8, c11, va, vb, readC, bs == null ? null : bs + 8);
        d += ld;
        Put(d, c20, va, vb, readC, bs);
        Put(d + 8, c21, va, vb, readC, bs == null ? null : bs + 8);
        d += ld;
        Put(d, c30, va, vb, readC, bs);
        Put(d + 8, c31, va, vb, readC, bs == null ? null : bs + 8);
        d += ld;
        Put(d, c40, va, vb, readC, bs);
        Put(d + 8, c41, va, vb, readC, bs == null ? null : bs + 8);
        d += ld;
        Put(d, c50, va, vb, readC, bs);
        Put(d + 8, c51, va, vb, readC, bs == null ? null : bs + 8);
        if (edge)
        {
            WriteTile(tile, 16, c, ldc, rows, cols, alpha, beta, bias);
        }
    }

    /// <summary>
    /// Scalar micro-kernel for machines without SIMD: accumulates the tile in <paramref name="tile"/>,
    /// with the vector kernels' fused chains (so the bits do not depend on the machine's width).
    /// </summary>
    private static void KernelScalar(float* a, float* b, int kc, float* c, long ldc, int rows, int cols,
        float alpha, float beta, float* bias, float* tile, int mr, int nr)
    {
        new Span<float>(tile, mr * nr).Clear();
        for (int p = 0; p < kc; p++, a += mr, b += nr)
        {
            for (int ii = 0; ii < mr; ii++)
            {
                float av = a[ii];
                float* t = tile + ii * nr;
                for (int jj = 0; jj < nr; jj++)
                {
                    t[jj] = MathF.FusedMultiplyAdd(av, b[jj], t[jj]);
                }
            }
        }

        WriteTile(tile, nr, c, ldc, rows, cols, alpha, beta, bias);
    }
}

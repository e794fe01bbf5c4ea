using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Engine.IO;

/// <summary>Conversions between stored 16-bit float formats and float32 (host little-endian).</summary>
internal static class ElementConversion
{
    /// <summary>IEEE half -> float (exact).</summary>
    public static void F16ToF32(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<ushort, Half>(src), dst[..src.Length]);
    }

    /// <summary>float -> IEEE half, round to nearest even (overflow to infinity).</summary>
    public static void F32ToF16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        TensorPrimitives.ConvertToHalf(src, MemoryMarshal.Cast<ushort, Half>(dst[..src.Length]));
    }

    /// <summary>bfloat16 -> float (exact: the 16 bits become the high half of the float's bits).</summary>
    public static void BF16ToF32(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        int n = src.Length;
        if (dst.Length < n)
        {
            throw new ArgumentException("destination too short", nameof(dst));
        }

        ref ushort s = ref MemoryMarshal.GetReference(src);
        ref uint d = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(dst));
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - Vector512<ushort>.Count; i += Vector512<ushort>.Count)
            {
                (Vector512<uint> lo, Vector512<uint> hi) = Vector512.Widen(Vector512.LoadUnsafe(ref s, (nuint)i));
                Vector512.ShiftLeft(lo, 16).StoreUnsafe(ref d, (nuint)i);
                Vector512.ShiftLeft(hi, 16).StoreUnsafe(ref d, (nuint)(i + Vector512<uint>.Count));
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - Vector256<ushort>.Count; i += Vector256<ushort>.Count)
            {
                (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.LoadUnsafe(ref s, (nuint)i));
                Vector256.ShiftLeft(lo, 16).StoreUnsafe(ref d, (nuint)i);
                Vector256.ShiftLeft(hi, 16).StoreUnsafe(ref d, (nuint)(i + Vector256<uint>.Count));
            }
        }

        for (; i < n; i++)
        {
            Unsafe.Add(ref d, i) = (uint)Unsafe.Add(ref s, i) << 16;
        }
    }

    /// <summary>
    /// float -> bfloat16, round to nearest even (as PyTorch does); NaN stays a (quiet) NaN, overflow
    /// rounds to infinity.
    /// </summary>
    public static void F32ToBF16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        if (dst.Length < src.Length)
        {
            throw new ArgumentException("destination too short", nameof(dst));
        }

        for (int i = 0; i < src.Length; i++)
        {
            dst[i] = F32ToBF16(src[i]);
        }
    }

    /// <summary>One float -> bfloat16 bits, round to nearest even.</summary>
    public static ushort F32ToBF16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u)
        {
            return (ushort)((bits >> 16) | 0x0040u); // NaN: keep sign and payload top, force quiet
        }

        uint rounding = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + rounding) >> 16);
    }
}

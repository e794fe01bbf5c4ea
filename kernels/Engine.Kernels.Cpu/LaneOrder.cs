using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Engine.Kernels.Cpu;

/// <summary>
/// The one lane order of the CPU kernels, so that a result has the same bits whatever vector width
/// the machine offers (AVX-512, AVX2, or neither).
/// </summary>
/// <remarks>
/// <para>
/// A reduction along a row keeps <see cref="Lanes"/> logical float (or double) lanes: lane j takes the
/// elements j, j + 16, j + 32, ... in order, as one Vector512 or as two Vector256 (lanes 0..7 and
/// 8..15; four Vector256&lt;double&gt; for a double reduction of widened floats). The lanes are folded by
/// the fixed tree of <see cref="Sum(Vector256{float}, Vector256{float})"/> (lane j + lane j + 8, then
/// + 4, + 2, + 1), and the elements past the last multiple of 16 are added after it, one by one.
/// </para>
/// <para>
/// Element-wise arithmetic is the same lane by lane in every width: fused multiply-adds stay fused
/// (never <c>MultiplyAddEstimate</c>, which fuses only where the hardware does), and an approximation
/// (exp) is one polynomial. Without AVX-512 the Vector256 form runs, and without AVX2 it still runs,
/// in the runtime's software fallback, which is the same IEEE arithmetic lane by lane (a fused
/// multiply-add stays fused): slower, but there is no separate scalar form that could round
/// differently. A scalar tail element either repeats the vector arithmetic with the scalar IEEE
/// operations (<see cref="MathF.FusedMultiplyAdd"/> where the vector fuses) or goes through the vector
/// form itself.
/// </para>
/// </remarks>
internal static class LaneOrder
{
    /// <summary>Logical lanes of a reduction: one Vector512 of floats.</summary>
    public const int Lanes = 16;

    /// <summary>Sum of the 16 lanes of <paramref name="v"/> in the fixed tree order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector512<float> v) => Sum(v.GetLower(), v.GetUpper());

    /// <summary>Sum of 16 lanes held as <paramref name="lo"/> (lanes 0..7) and <paramref name="hi"/> (8..15): j + (j + 8), then + 4, + 2, + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector256<float> lo, Vector256<float> hi)
    {
        Vector256<float> s8 = lo + hi;
        Vector128<float> s4 = s8.GetLower() + s8.GetUpper();
        return (s4.GetElement(0) + s4.GetElement(2)) + (s4.GetElement(1) + s4.GetElement(3));
    }

    /// <summary>Sum of 16 double lanes held as <paramref name="a0"/> (lanes 0..7) and <paramref name="a1"/> (8..15), in the tree of <see cref="Sum(Vector256{float}, Vector256{float})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Sum(Vector512<double> a0, Vector512<double> a1) =>
        Sum(a0.GetLower(), a0.GetUpper(), a1.GetLower(), a1.GetUpper());

    /// <summary>Sum of 16 double lanes held as four quarters (lanes 0..3, 4..7, 8..11, 12..15), in the fixed tree order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Sum(Vector256<double> q0, Vector256<double> q1, Vector256<double> q2, Vector256<double> q3)
    {
        Vector256<double> s4 = (q0 + q2) + (q1 + q3);
        Vector128<double> s2 = s4.GetLower() + s4.GetUpper();
        return s2.GetElement(0) + s2.GetElement(1);
    }

    /// <summary>Largest of the 16 lanes (NaN if any is NaN), in the same tree.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Max(Vector256<float> lo, Vector256<float> hi)
    {
        Vector256<float> s8 = Vector256.Max(lo, hi);
        Vector128<float> s4 = Vector128.Max(s8.GetLower(), s8.GetUpper());
        return MathF.Max(MathF.Max(s4.GetElement(0), s4.GetElement(2)), MathF.Max(s4.GetElement(1), s4.GetElement(3)));
    }
}

namespace Engine.Tests.Support;

/// <summary>Seeded random inputs for kernel tests.</summary>
internal static class TestData
{
    /// <summary>n floats uniform in [-scale, scale).</summary>
    public static float[] Uniform(int seed, long n, float scale = 1f)
    {
        var rng = new Random(seed);
        var data = new float[n];
        for (long i = 0; i < n; i++)
        {
            data[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        }

        return data;
    }

    /// <summary>n integers uniform in [0, max).</summary>
    public static int[] Ints(int seed, long n, int max)
    {
        var rng = new Random(seed);
        var data = new int[n];
        for (long i = 0; i < n; i++)
        {
            data[i] = rng.Next(max);
        }

        return data;
    }
}

/// <summary>Error measures used by every numeric comparison in the tests.</summary>
internal static class Compare
{
    /// <summary>
    /// Normalised max error: <c>max_i |actual_i - expected_i| / max_i |expected_i|</c>
    /// (the denominator floored at 1e-30). This is the "relative error" the tests bound and report.
    /// </summary>
    public static double RelativeError(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        return Engine.Tools.BackendCheck.RelativeError(expected, actual); // the measure `engine check-backends` reports
    }

    /// <summary>Same as <see cref="RelativeError(ReadOnlySpan{float}, ReadOnlySpan{float})"/> against a double reference.</summary>
    public static double RelativeError(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (float.IsNaN(actual[i]))
            {
                return double.PositiveInfinity;
            }

            maxDiff = Math.Max(maxDiff, Math.Abs(actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }

        return maxDiff / Math.Max(maxRef, 1e-30);
    }

    /// <summary>Asserts the normalised max error is at most <paramref name="bound"/>, naming it in the failure.</summary>
    public static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double bound, string what)
    {
        double err = RelativeError(expected, actual);
        Assert.True(err <= bound, $"{what}: relative error {err:E3} exceeds {bound:E1}");
    }

    /// <summary>Asserts closeness to a double-precision reference.</summary>
    public static void Close(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double bound, string what)
    {
        double err = RelativeError(expected, actual);
        Assert.True(err <= bound, $"{what}: relative error {err:E3} exceeds {bound:E1}");
    }
}

/// <summary>Central finite differences of a scalar loss, to check analytic gradients.</summary>
internal static class FiniteDifference
{
    /// <summary>
    /// Checks <paramref name="analytic"/> = dL/dx at up to <paramref name="samples"/> coordinates
    /// spread over the vector, where <paramref name="loss"/> evaluates L in double precision from the
    /// (perturbed) input. A coordinate fails when <c>|fd - analytic| &gt; tol * s</c>, with s the
    /// largest analytic component, so tiny components are judged on the gradient's own scale.
    /// Returns the worst error in units of s.
    /// </summary>
    public static double Check(float[] x, ReadOnlySpan<float> analytic, Func<float[], double> loss, string what,
        int samples = 24, double h = 1e-2, double tol = 2e-2)
    {
        Assert.Equal(x.Length, analytic.Length);
        double scale = 0;
        foreach (float g in analytic)
        {
            scale = Math.Max(scale, Math.Abs(g));
        }

        scale = Math.Max(scale, 1e-6);
        double worst = 0;
        int step = Math.Max(1, x.Length / samples);
        for (int i = (x.Length % step) / 2; i < x.Length; i += step)
        {
            float saved = x[i];
            x[i] = (float)(saved + h);
            double up = loss(x);
            x[i] = (float)(saved - h);
            double down = loss(x);
            x[i] = saved;
            double fd = (up - down) / (2 * h);
            double err = Math.Abs(fd - analytic[i]) / scale;
            worst = Math.Max(worst, err);
            Assert.True(err <= tol, $"{what}: d/dx[{i}] finite difference {fd:G6} vs analytic {analytic[i]:G6} (error {err:E2} of the gradient scale {scale:G4})");
        }

        return worst;
    }
}

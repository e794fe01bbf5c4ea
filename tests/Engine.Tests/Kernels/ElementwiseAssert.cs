namespace Engine.Tests.Kernels;

/// <summary>Checks shared by the element-wise, norm, RoPE, embedding and optimizer kernel tests.</summary>
internal static class ElementwiseAssert
{
    /// <summary>Asserts two results are the same bit for bit (NaN payloads and the sign of zero included).</summary>
    public static void BitIdentical(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            int a = BitConverter.SingleToInt32Bits(expected[i]), b = BitConverter.SingleToInt32Bits(actual[i]);
            Assert.True(a == b, $"{what}: element {i} differs: {expected[i]:R} vs {actual[i]:R}");
        }
    }

    /// <summary>Asserts <c>|actual - expected| &lt;= rel |expected| + abs</c> element by element.</summary>
    public static void ElementsClose(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double rel, double abs, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(actual[i] - expected[i]);
            Assert.True(err <= rel * Math.Abs(expected[i]) + abs,
                $"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R} (error {err:E3})");
        }
    }

    /// <summary>sum_i g[i] * y[i] in double: the scalar loss whose gradient the backward kernels compute.</summary>
    public static double Dot(ReadOnlySpan<float> g, ReadOnlySpan<double> y)
    {
        Assert.Equal(g.Length, y.Length);
        double sum = 0;
        for (int i = 0; i < g.Length; i++)
        {
            sum += g[i] * y[i];
        }

        return sum;
    }

    /// <summary>
    /// Asserts that <paramref name="run"/> allocates no managed memory on this thread once warmed up
    /// (one call to warm up, then up to three measured calls, of which one must allocate nothing: the
    /// runtime itself, e.g. tiered compilation, may allocate once in a while; a kernel that allocates
    /// per call fails every attempt).
    /// </summary>
    public static void DoesNotAllocate(Action run)
    {
        run();
        long allocated = long.MaxValue;
        for (int attempt = 0; attempt < 3 && allocated != 0; attempt++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            run();
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }

        Assert.True(allocated == 0, $"{allocated} bytes allocated per call");
    }

    /// <summary>Widens to double.</summary>
    public static double[] ToDouble(ReadOnlySpan<float> x)
    {
        var result = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            result[i] = x[i];
        }

        return result;
    }
}

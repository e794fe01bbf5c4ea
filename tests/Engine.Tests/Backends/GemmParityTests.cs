using Engine.Core;
using Engine.Tools;
using Engine.Tests.Support;
using Xunit.Abstractions;

namespace Engine.Tests.Backends;

/// <summary>GEMM (all transpose forms, alpha/beta/bias) and the bias gradient: every device vs the CPU backend.</summary>
public sealed class GemmParityTests(BackendFixture fx, ITestOutputHelper output) : IClassFixture<BackendFixture>
{
    /// <summary>Shapes: single element, odd sizes below one tile, several tiles with ragged edges.</summary>
    internal static readonly (int M, int N, int K)[] Shapes = [(1, 1, 1), (7, 13, 5), (3, 70, 33), (65, 33, 70), (130, 67, 129)];

    /// <summary>
    /// Every transpose form with alpha, beta and bias, for each shape, against the CPU: for tests of
    /// a backend's other GEMM kernels (<paramref name="kernel"/> names the one selected).
    /// </summary>
    internal static void CheckEveryForm(BackendFixture fx, string device, ITestOutputHelper output, string kernel,
        IEnumerable<(int M, int N, int K)> shapes, double tolerance)
    {
        foreach (var (m, n, k) in shapes)
        {
            foreach (var (transA, transB, alpha, beta) in new[] { (false, false, 1f, 0f), (false, true, 0.5f, 1f), (true, false, 1f, 1f), (true, true, -1f, 0.25f) })
            {
                var ops = new Operands().F("c", TestData.Uniform(1, (long)m * n)).F("a", TestData.Uniform(2, (long)m * k))
                    .F("b", TestData.Uniform(3, (long)k * n)).F("bias", TestData.Uniform(4, n));
                string form = (transA ? "T" : "N") + (transB ? "T" : "N");
                Parity.Check(fx, device, output, $"Gemm {kernel} {form} {m}x{n}x{k}", ops,
                    (a, v) => a.Gemm(v["c"], v["a"], v["b"], m, n, k, transA, transB, alpha, beta, v["bias"]), ("c", tolerance));
            }
        }
    }

    [Theory]
    [BackendDevices]
    public void Gemm_all_transposes_match_the_cpu(string device)
    {
        foreach (var (m, n, k) in Shapes)
        {
            foreach (bool transA in new[] { false, true })
            {
                foreach (bool transB in new[] { false, true })
                {
                    var ops = new Operands()
                        .F("c", TestData.Uniform(1, (long)m * n))
                        .F("a", TestData.Uniform(2, (long)m * k))
                        .F("b", TestData.Uniform(3, (long)k * n));
                    string form = (transA ? "T" : "N") + (transB ? "T" : "N");
                    Parity.Check(fx, device, output, $"Gemm {form} {m}x{n}x{k}", ops,
                        (acc, v) => acc.Gemm(v["c"], v["a"], v["b"], m, n, k, transA, transB), ("c", 1e-5));
                }
            }
        }
    }

    [Theory]
    [BackendDevices]
    public void Gemm_alpha_beta_and_bias_match_the_cpu(string device)
    {
        const int m = 37, n = 45, k = 29;
        foreach (var (alpha, beta, withBias, transA, transB) in new[]
                 {
                     (1f, 0f, true, false, true),    // Linear forward: Y = X W^T + b
                     (0.5f, 1f, false, true, false), // weight gradient: dW += dY^T X (scaled)
                     (-2f, 0.25f, true, false, false),
                     (1f, -1f, true, true, true),
                 })
        {
            var ops = new Operands()
                .F("c", TestData.Uniform(4, (long)m * n))
                .F("a", TestData.Uniform(5, (long)m * k))
                .F("b", TestData.Uniform(6, (long)k * n))
                .F("bias", TestData.Uniform(7, n));
            Parity.Check(fx, device, output, $"Gemm alpha {alpha} beta {beta}{(withBias ? " bias" : "")}", ops,
                (acc, v) => acc.Gemm(v["c"], v["a"], v["b"], m, n, k, transA, transB, alpha, beta, withBias ? v["bias"] : default),
                ("c", 1e-5));
        }
    }

    [Theory]
    [BackendDevices]
    public void Gemm_with_beta_zero_ignores_nan_in_c(string device)
    {
        const int m = 19, n = 23, k = 17;
        float[] c = new float[m * n];
        Array.Fill(c, float.NaN);
        var ops = new Operands().F("c", c).F("a", TestData.Uniform(8, m * k)).F("b", TestData.Uniform(9, k * n));
        var (_, dev) = Parity.Check(fx, device, output, "Gemm beta=0 over NaN", ops,
            (acc, v) => acc.Gemm(v["c"], v["a"], v["b"], m, n, k, false, false), ("c", 1e-5));
        Assert.DoesNotContain(dev["c"], float.IsNaN);
    }

    [Theory]
    [BackendDevices]
    public void Bias_backward_matches_the_cpu(string device)
    {
        foreach (var (rows, cols) in new[] { (1, 1), (33, 7), (5, 130), (97, 65) })
        {
            var ops = new Operands().F("db", TestData.Uniform(10, cols)).F("dy", TestData.Uniform(11, (long)rows * cols));
            Parity.Check(fx, device, output, $"BiasBackward {rows}x{cols}", ops,
                (acc, v) => acc.BiasBackward(v["db"], v["dy"], rows, cols), ("db", 1e-5));
        }
    }
}

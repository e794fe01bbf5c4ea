using Engine.Core;
using Engine.Kernels.Cpu;
using Engine.Tests.Support;

namespace Engine.Tests.Kernels;

/// <summary>
/// The behaviour-cloning loss head (<see cref="Accelerator.BehaviourCloningLoss"/>) on the CPU: loss and dL/dlogits
/// against a scalar reference written here, the gradient against finite differences of the op's own loss, and a
/// bad action.
/// </summary>
public sealed class BcLossTests
{
    private static readonly BcLoss[] Kinds = [BcLoss.Mse, BcLoss.Mae, BcLoss.CrossEntropy];

    /// <summary>Runs the op on <paramref name="acc"/>; returns the loss and dL/dlogits.</summary>
    private static (float Loss, float[] Gradient) Run(Accelerator acc, float[] logits, int[] actions, BcLoss kind, int n, int a)
    {
        using DeviceBuffer z = acc.Put(logits), y = acc.Put(actions), dz = acc.Allocate((long)n * a), loss = acc.Allocate(1);
        acc.BehaviourCloningLoss(dz.All, loss.All, z.All, y.All, kind, n, a);
        return (acc.Get(loss)[0], acc.Get(dz));
    }

    /// <summary>
    /// The scalar reference: p = softmax(z); MSE / MAE of p against the one-hot action over N x A entries, or the
    /// mean -log p_y; gradient by the chain rule written out per entry (dp_k/dz_j = p_k ([j = k] - p_j)).
    /// </summary>
    private static (double Loss, double[] Gradient) Reference(float[] logits, int[] actions, BcLoss kind, int n, int a)
    {
        double loss = 0;
        var grad = new double[n * a];
        for (int i = 0; i < n; i++)
        {
            double[] z = logits.Skip(i * a).Take(a).Select(v => (double)v).ToArray();
            double m = z.Max();
            double[] e = z.Select(v => Math.Exp(v - m)).ToArray();
            double[] p = e.Select(v => v / e.Sum()).ToArray();
            int y = actions[i];
            if (kind == BcLoss.CrossEntropy)
            {
                loss += -Math.Log(p[y]) / n;
                for (int j = 0; j < a; j++)
                {
                    grad[i * a + j] = (p[j] - (j == y ? 1 : 0)) / n;
                }

                continue;
            }

            for (int k = 0; k < a; k++)
            {
                double diff = p[k] - (k == y ? 1 : 0);
                loss += (kind == BcLoss.Mse ? diff * diff : Math.Abs(diff)) / (n * a);
                double dLdp = (kind == BcLoss.Mse ? 2 * diff : Math.Sign(diff)) / (n * a);
                for (int j = 0; j < a; j++)
                {
                    grad[i * a + j] += dLdp * p[k] * ((j == k ? 1 : 0) - p[j]);
                }
            }
        }

        return (loss, grad);
    }

    [Fact]
    public void Loss_and_gradient_match_a_scalar_reference()
    {
        using CpuAccelerator acc = TestDevices.Cpu(1);
        foreach (var (n, a) in new[] { (1, 2), (7, 5), (33, 15) })
        {
            float[] logits = TestData.Uniform(3 + n, (long)n * a, 3f);
            int[] actions = TestData.Ints(4 + n, n, a);
            foreach (BcLoss kind in Kinds)
            {
                var (loss, grad) = Run(acc, logits, actions, kind, n, a);
                var (refLoss, refGrad) = Reference(logits, actions, kind, n, a);
                Assert.True(Math.Abs(loss - refLoss) <= 1e-6 * Math.Max(1, Math.Abs(refLoss)), $"{kind} n{n} a{a}: loss {loss} vs {refLoss}");
                Compare.Close(refGrad, grad, 1e-5, $"{kind} n{n} a{a} dL/dlogits");
            }
        }
    }

    [Fact]
    public void Hand_computed_rows_agree()
    {
        // Row 0: p = softmax(0.5, -1, 2), action 2; row 1: uniform thirds, action 0.
        using CpuAccelerator acc = TestDevices.Cpu(1);
        float[] logits = [0.5f, -1f, 2f, 0f, 0f, 0f];
        int[] actions = [2, 0];
        double s = Math.Exp(0.5) + Math.Exp(-1) + Math.Exp(2);
        double[] p0 = [Math.Exp(0.5) / s, Math.Exp(-1) / s, Math.Exp(2) / s];
        double mse = (p0[0] * p0[0] + p0[1] * p0[1] + (p0[2] - 1) * (p0[2] - 1) + 2.0 / 9 + 4.0 / 9) / 6;
        Assert.Equal(mse, Run(acc, logits, actions, BcLoss.Mse, 2, 3).Loss, 6);
        var (ce, grad) = Run(acc, logits, actions, BcLoss.CrossEntropy, 2, 3);
        Assert.Equal((-Math.Log(p0[2]) - Math.Log(1.0 / 3)) / 2, ce, 6);
        Assert.Equal(p0[0] / 2, grad[0], 6);
        Assert.Equal((p0[2] - 1) / 2, grad[2], 6);
        Assert.Equal((1.0 / 3 - 1) / 2, grad[3], 6);
    }

    [Fact]
    public void Gradient_matches_finite_differences_of_the_loss()
    {
        using CpuAccelerator acc = TestDevices.Cpu(1);
        const int n = 6, a = 5;
        float[] logits = TestData.Uniform(17, n * a, 2f);
        int[] actions = TestData.Ints(18, n, a);
        foreach (BcLoss kind in Kinds)
        {
            float[] analytic = Run(acc, logits, actions, kind, n, a).Gradient;
            // MAE has kinks where p_j = y_j, never reached for interior p (0 < p < 1 against 0 or 1), so it is smooth here.
            FiniteDifference.Check(logits, analytic, x => Run(acc, x, actions, kind, n, a).Loss, $"{kind}", samples: n * a, h: 1e-2, tol: 5e-3);
        }
    }

    [Fact]
    public void An_action_outside_the_range_is_refused()
    {
        using CpuAccelerator acc = TestDevices.Cpu(1);
        Assert.Throws<ArgumentOutOfRangeException>(() => Run(acc, new float[6], [0, 3], BcLoss.Mse, 2, 3));
        Assert.Throws<ArgumentException>(() => Run(acc, new float[6], [0, 1, 2, 0, 1, 2], BcLoss.Mse, 6, 1));
    }
}

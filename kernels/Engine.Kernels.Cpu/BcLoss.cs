using Engine.Core;

namespace Engine.Kernels.Cpu;

// The behaviour-cloning loss head (softmax over a few actions per row, the loss, dL/dlogits), forward and
// backward in one pass. Batches are a few hundred rows of 4-15 actions, so one thread in double precision
// is fast enough and trivially deterministic.
internal sealed unsafe partial class CpuAccelerator
{
    protected override void BehaviourCloningLossCore(Tensor dlogits, Tensor loss, Tensor logits, Tensor actions, BcLoss kind, int n, int a)
    {
        float* dz = F(dlogits), z = F(logits);
        int* y = I(actions);
        Span<double> p = a <= 256 ? stackalloc double[a] : new double[a];
        Span<double> dp = a <= 256 ? stackalloc double[a] : new double[a];
        double total = 0;
        double rowScale = kind == BcLoss.CrossEntropy ? 1.0 / n : 1.0 / ((double)n * a);
        for (int i = 0; i < n; i++)
        {
            float* zi = z + ((long)i * a);
            float* gi = dz + ((long)i * a);
            int target = y[i];
            if ((uint)target >= (uint)a)
            {
                throw new ArgumentOutOfRangeException(nameof(actions), $"action {target} of row {i} is outside [0, {a})");
            }

            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < a; j++)
            {
                max = Math.Max(max, zi[j]);
            }

            for (int j = 0; j < a; j++)
            {
                p[j] = Math.Exp(zi[j] - max);
                sum += p[j];
            }

            for (int j = 0; j < a; j++)
            {
                p[j] /= sum;
            }

            if (kind == BcLoss.CrossEntropy)
            {
                total += -(zi[target] - max - Math.Log(sum));
                for (int j = 0; j < a; j++)
                {
                    gi[j] = (float)(rowScale * (p[j] - (j == target ? 1 : 0)));
                }

                continue;
            }

            // dL/dp, then through the softmax Jacobian: dz_j = p_j (dp_j - sum_k p_k dp_k).
            double dot = 0;
            for (int j = 0; j < a; j++)
            {
                double diff = p[j] - (j == target ? 1 : 0);
                total += kind == BcLoss.Mse ? diff * diff : Math.Abs(diff);
                dp[j] = rowScale * (kind == BcLoss.Mse ? 2 * diff : Math.Sign(diff));
                dot += p[j] * dp[j];
            }

            for (int j = 0; j < a; j++)
            {
                gi[j] = (float)(p[j] * (dp[j] - dot));
            }
        }

        F(loss)[0] = (float)(total * rowScale);
    }
}

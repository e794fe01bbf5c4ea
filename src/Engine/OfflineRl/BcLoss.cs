using Engine.Core;

namespace Engine.OfflineRl;

/// <summary>The behaviour-cloning loss on the policy's action distribution.</summary>
internal enum BcLoss
{
    /// <summary>Mean squared error between softmax(logits) and the one-hot action, averaged over rows and actions (the paper's code, <c>nn.MSELoss</c>).</summary>
    Mse,

    /// <summary>Mean absolute error between softmax(logits) and the one-hot action, averaged over rows and actions.</summary>
    Mae,

    /// <summary>Cross-entropy of the action under softmax(logits), averaged over rows.</summary>
    CrossEntropy,
}

/// <summary>
/// The loss head: softmax over a few actions per row, the loss, and its gradient with respect to the logits.
/// It runs on the host (an [n, A] array with A of 4-15 is tiny next to the MLP's products), in double.
/// </summary>
internal static class BcLossHead
{
    /// <summary>Parses a loss name (mse, mae, ce).</summary>
    public static BcLoss Parse(string name) => name switch
    {
        "mse" => BcLoss.Mse,
        "mae" => BcLoss.Mae,
        "ce" or "cross-entropy" => BcLoss.CrossEntropy,
        _ => throw new EngineException($"unknown BC loss '{name}' (known: mse, mae, ce)"),
    };

    /// <summary>Loss of <paramref name="n"/> rows of logits [n, A] against <paramref name="actions"/>; writes dL/dlogits [n, A].</summary>
    public static float Compute(ReadOnlySpan<float> logits, ReadOnlySpan<int> actions, int n, int a, BcLoss loss, Span<float> logitGradient)
    {
        Span<double> p = stackalloc double[a];
        Span<double> dp = stackalloc double[a];
        double total = 0;
        double rowScale = loss == BcLoss.CrossEntropy ? 1.0 / n : 1.0 / ((double)n * a);
        for (int i = 0; i < n; i++)
        {
            ReadOnlySpan<float> z = logits.Slice(i * a, a);
            int y = actions[i];
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < a; j++)
            {
                max = Math.Max(max, z[j]);
            }

            for (int j = 0; j < a; j++)
            {
                p[j] = Math.Exp(z[j] - max);
                sum += p[j];
            }

            for (int j = 0; j < a; j++)
            {
                p[j] /= sum;
            }

            Span<float> dz = logitGradient.Slice(i * a, a);
            if (loss == BcLoss.CrossEntropy)
            {
                total += -(z[y] - max - Math.Log(sum));
                for (int j = 0; j < a; j++)
                {
                    dz[j] = (float)(rowScale * (p[j] - (j == y ? 1 : 0)));
                }

                continue;
            }

            // dL/dp, then through the softmax Jacobian: dz_j = p_j (dp_j - sum_k p_k dp_k).
            double dot = 0;
            for (int j = 0; j < a; j++)
            {
                double diff = p[j] - (j == y ? 1 : 0);
                total += loss == BcLoss.Mse ? diff * diff : Math.Abs(diff);
                dp[j] = rowScale * (loss == BcLoss.Mse ? 2 * diff : Math.Sign(diff));
                dot += p[j] * dp[j];
            }

            for (int j = 0; j < a; j++)
            {
                dz[j] = (float)(p[j] * (dp[j] - dot));
            }
        }

        return (float)(total * rowScale);
    }
}

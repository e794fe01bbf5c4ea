namespace Engine.Core;

/// <summary>The behaviour-cloning loss on a policy's action distribution (<see cref="Accelerator.BehaviourCloningLoss"/>).</summary>
internal enum BcLoss
{
    /// <summary>Mean squared error between softmax(logits) and the one-hot action, averaged over rows and actions (the paper's code, <c>nn.MSELoss</c>).</summary>
    Mse,

    /// <summary>Mean absolute error between softmax(logits) and the one-hot action, averaged over rows and actions.</summary>
    Mae,

    /// <summary>Cross-entropy of the action under softmax(logits), averaged over rows.</summary>
    CrossEntropy,
}

internal abstract partial class Accelerator
{
    /// <summary>
    /// The behaviour-cloning loss head, forward and backward in one pass: per row
    /// <c>p = softmax(logits[i, :])</c> and, against the one-hot action <c>y_i</c>,
    /// MSE <c>sum_j (p_j - y_ij)^2 / (N A)</c>, MAE <c>sum_j |p_j - y_ij| / (N A)</c> or cross-entropy
    /// <c>-log p_{a_i} / N</c>. Writes the loss and <c>dL/dlogits</c>: for cross-entropy <c>(p - y) / N</c>;
    /// for MSE and MAE <c>dL/dp</c> (<c>2 (p - y) / (N A)</c>, <c>sign(p - y) / (N A)</c>) through the softmax
    /// Jacobian, <c>dz_j = p_j (dp_j - sum_k p_k dp_k)</c>. Softmax sums and the loss accumulate in double
    /// (acc_t on the GPU backends), rows in a fixed order.
    /// </summary>
    /// <param name="dlogits">[N, A] gradient with respect to the logits (written).</param>
    /// <param name="loss">[1] the loss (written).</param>
    /// <param name="logits">[N, A] the policy's logits.</param>
    /// <param name="actions">[N] I32 action of each row, in [0, A).</param>
    /// <param name="kind">MSE, MAE or cross-entropy.</param>
    /// <param name="n">Rows N.</param>
    /// <param name="a">Actions A (at least 2).</param>
    public void BehaviourCloningLoss(Tensor dlogits, Tensor loss, Tensor logits, Tensor actions, BcLoss kind, int n, int a)
    {
        CheckPositive(n, nameof(n));
        if (a < 2)
        {
            throw new ArgumentException($"a behaviour-cloning loss needs at least 2 actions (got {a})", nameof(a));
        }

        Check(dlogits, nameof(dlogits), minLength: (long)n * a);
        Check(loss, nameof(loss), minLength: 1);
        Check(logits, nameof(logits), minLength: (long)n * a);
        Check(actions, nameof(actions), DType.I32, n);
        if (!Enum.IsDefined(kind))
        {
            throw new ArgumentException($"unknown behaviour-cloning loss {kind}", nameof(kind));
        }

        using (Profile("BehaviourCloningLoss"))
        {
            BehaviourCloningLossCore(dlogits, loss, logits, actions, kind, n, a);
        }
    }

    protected abstract void BehaviourCloningLossCore(Tensor dlogits, Tensor loss, Tensor logits, Tensor actions, BcLoss kind, int n, int a);
}

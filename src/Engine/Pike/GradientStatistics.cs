using Engine.Core;

namespace Engine.Pike;

/// <summary>One task's gradient statistics at a mixing update.</summary>
/// <param name="NormSquared">Unbiased estimate of <c>||g_k||^2</c>: <c>&lt;g_a, g_b&gt;</c> of the two halves' mean gradients.</param>
/// <param name="Variance">Estimate of the per-example gradient variance <c>sigma_k^2</c>: <c>(n/4) ||g_a - g_b||^2</c> for n examples.</param>
/// <param name="Loss">The task's mean loss over both halves.</param>
internal readonly record struct TaskStatistics(double NormSquared, double Variance, double Loss);

/// <summary>
/// PiKE's per-task statistics from two half-batch gradients, on the device (methods.md §4): with <c>g_a</c>,
/// <c>g_b</c> the mean gradients of two disjoint halves of n examples, <c>&lt;g_a, g_b&gt;</c> is unbiased for
/// <c>||g||^2</c> (independent halves) and <c>E||g_a - g_b||^2 = 4 sigma^2 / n</c>. Inner products come from the
/// existing squared-norm reduction by polarisation, <c>&lt;a, b&gt; = (||a + b||^2 - ||a - b||^2) / 4</c>, so no
/// new kernel is needed. Each task's mean gradient <c>(g_a + g_b) / 2</c> is kept for the pairwise cosines.
/// </summary>
internal sealed class GradientStatistics : IDisposable
{
    private readonly Accelerator acc;
    private readonly long length;
    private readonly DeviceBuffer[] taskGradients;   // K x [length]: each task's mean gradient at the last measurement
    private readonly double[] taskNormSquared;       // ||(g_a + g_b) / 2||^2 per task (biased; only for cosines)
    private readonly DeviceBuffer scratch;           // [length]
    private readonly DeviceBuffer sums;              // [2]
    private readonly float[] host = new float[2];

    public GradientStatistics(Accelerator acc, long length, int tasks)
    {
        this.acc = acc;
        this.length = length;
        taskGradients = new DeviceBuffer[tasks];
        taskNormSquared = new double[tasks];
        try
        {
            for (int k = 0; k < tasks; k++)
            {
                taskGradients[k] = acc.Allocate(length);
            }

            scratch = acc.Allocate(length);
            sums = acc.Allocate(2);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>
    /// The statistics of task <paramref name="task"/> from its halves' mean gradients <paramref name="halfA"/> and
    /// <paramref name="halfB"/> [length] over <paramref name="examples"/> examples in all; <paramref name="halfB"/> is overwritten.
    /// </summary>
    public (double NormSquared, double Variance) FromHalves(int task, Tensor halfA, Tensor halfB, int examples)
    {
        Tensor sum = taskGradients[task].All;
        acc.Add(sum, halfA, halfB, length);          // g_a + g_b
        acc.Scale(halfB, -1f, length);
        acc.Add(halfB, halfA, halfB, length);        // g_a - g_b, in place
        acc.Zero(sums.All);
        acc.SumOfSquares(sums.Slice(0, 1), sum, length);
        acc.SumOfSquares(sums.Slice(1, 1), halfB, length);
        acc.Download(sums.All, host);
        double plus = host[0], minus = host[1];
        acc.Scale(sum, 0.5f, length);                // the task's mean gradient, for the cosines
        taskNormSquared[task] = plus / 4;
        return ((plus - minus) / 4, examples / 4.0 * minus);
    }

    /// <summary>
    /// The mean cosine over task pairs of the mean gradients last measured (NaN for fewer than two tasks or a
    /// zero gradient): the paper's "low gradient conflict" premise holds when it is near zero or positive.
    /// </summary>
    public double MeanPairwiseCosine()
    {
        int k = taskGradients.Length;
        double total = 0;
        int pairs = 0;
        for (int i = 0; i < k; i++)
        {
            for (int j = i + 1; j < k; j++)
            {
                acc.Add(scratch.All, taskGradients[i].All, taskGradients[j].All, length);
                acc.Zero(sums.All);
                acc.SumOfSquares(sums.Slice(0, 1), scratch.All, length);
                acc.Download(sums.All, host);
                double ni = taskNormSquared[i], nj = taskNormSquared[j];
                total += (host[0] - ni - nj) / (2 * Math.Sqrt(ni * nj));
                pairs++;
            }
        }

        return pairs == 0 ? double.NaN : total / pairs;
    }

    public void Dispose()
    {
        foreach (DeviceBuffer? b in taskGradients)
        {
            b?.Dispose();
        }

        scratch?.Dispose();
        sums?.Dispose();
    }
}

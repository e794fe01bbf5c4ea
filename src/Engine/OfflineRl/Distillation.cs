using Engine.Core;
using Engine.Util;

namespace Engine.OfflineRl;

/// <summary>
/// A small labelled set of states: <see cref="Count"/> rows, grouped in one bucket per action class present in the
/// data (bucket sizes differ by at most one). The states are what distillation learns; the labels are fixed when the
/// set is made and never change.
/// </summary>
internal sealed class SyntheticSet
{
    private readonly int[] labels;

    private SyntheticSet(int observationSize, float[] states, int[] labels, int[] bucketStart, int[] bucketCount)
    {
        ObservationSize = observationSize;
        States = states;
        this.labels = labels;
        BucketStart = bucketStart;
        BucketCount = bucketCount;
    }

    /// <summary>Floats per state.</summary>
    public int ObservationSize { get; }

    /// <summary>Rows.</summary>
    public int Count => labels.Length;

    /// <summary>[Count, ObservationSize] states (learned).</summary>
    public float[] States { get; }

    /// <summary>[Count] action labels, bucket by bucket (read-only: fixed at creation).</summary>
    public ReadOnlySpan<int> Labels => labels;

    /// <summary>First row of each action's bucket ([ActionCount]; meaningless where the count is 0).</summary>
    public int[] BucketStart { get; }

    /// <summary>Rows of each action's bucket ([ActionCount]; 0 for actions absent from the data).</summary>
    public int[] BucketCount { get; }

    /// <summary>
    /// <paramref name="size"/> real states drawn without replacement, class-balanced over the actions that occur in the
    /// data: each class gets size / classes rows and the first size % classes classes one more. A class with too few rows
    /// is an error naming it.
    /// </summary>
    public static SyntheticSet FromRealStates(OfflineDataset data, int size, ulong seed)
    {
        int[][] rowsByAction = Enumerable.Range(0, data.ActionCount).Select(data.RowsOfAction).ToArray();
        int[] present = Enumerable.Range(0, data.ActionCount).Where(a => rowsByAction[a].Length > 0).ToArray();
        if (present.Length < 2)
        {
            throw new EngineException($"distillation needs at least two actions in the data, found {present.Length}");
        }

        if (size < present.Length || size > data.Count)
        {
            throw new EngineException($"the synthetic set size must be in [{present.Length}, {data.Count}] (one per action present, at most the data), got {size}");
        }

        var random = new SplitMix64(seed);
        int d = data.ObservationSize;
        var states = new float[size * d];
        var labels = new int[size];
        var start = new int[data.ActionCount];
        var count = new int[data.ActionCount];
        int row = 0;
        for (int k = 0; k < present.Length; k++)
        {
            int action = present[k];
            int bucket = size / present.Length + (k < size % present.Length ? 1 : 0);
            int[] pool = (int[])rowsByAction[action].Clone();
            if (pool.Length < bucket)
            {
                throw new EngineException($"action {action} has only {pool.Length} rows in the data, its bucket needs {bucket}: choose a smaller synthetic set");
            }

            BehaviourCloning.Shuffle(pool, ref random);
            start[action] = row;
            count[action] = bucket;
            for (int i = 0; i < bucket; i++, row++)
            {
                data.Observation(pool[i]).CopyTo(states.AsSpan(row * d, d));
                labels[row] = action;
            }
        }

        return new SyntheticSet(d, states, labels, start, count);
    }

    /// <summary>The set as a dataset (one single-step episode per row, zero rewards), so BC and the CLI read it like any data.</summary>
    public OfflineDataset ToDataset(OfflineDataset source) =>
        new(source.Environment, source.ActionCount, source.ObservationShape, (float[])States.Clone(), labels.ToArray(), new float[Count],
            Enumerable.Range(0, Count).ToArray(), new float[Count]);
}

/// <summary>
/// The gradient-matching distance of one action class and its gradient with respect to the synthetic states:
/// <c>D = sum over parameters (g_syn - g_real)^2</c> with <c>g = grad_theta BC loss</c> of each batch. The gradient
/// <c>dD/dS = J^T u</c> (<c>u = 2 (g_syn - g_real)</c>, <c>J = d g_syn / dS</c>) is the input gradient of the
/// directional derivative <c>&lt;grad_theta l(S), u&gt;</c>, taken as the finite-difference Hessian-vector product
/// <c>(grad_S l(S; theta + e u) - grad_S l(S; theta - e u)) / (2 e)</c> with <c>e = radius / |u|</c>: four forward /
/// backward passes on the accelerator, no second-order kernel.
/// </summary>
internal sealed class GradientMatcher : IDisposable
{
    private readonly MlpPolicy net;
    private readonly BcLoss loss;
    private readonly double radius;
    private readonly DeviceBuffer realGrad, difference, theta, perturbation, scalar;   // [P] x 4, [1]
    private readonly float[] hostScalar = new float[1];
    private float[] plus = [], minus = [];

    public GradientMatcher(MlpPolicy net, BcLoss loss, double radius = 1e-2)
    {
        this.net = net;
        this.loss = loss;
        this.radius = radius > 0 ? radius : throw new EngineException($"the finite-difference radius must be positive, got {radius}");
        realGrad = net.Acc.Allocate(net.ParameterCount);
        difference = net.Acc.Allocate(net.ParameterCount);
        theta = net.Acc.Allocate(net.ParameterCount);
        perturbation = net.Acc.Allocate(net.ParameterCount);
        scalar = net.Acc.Allocate(1);
    }

    /// <summary>
    /// D for one class's synthetic rows (<paramref name="synthetic"/> [nSyn, D]) against a real batch ([nReal, D]);
    /// when <paramref name="syntheticGradient"/> is not empty, writes dD/dS [nSyn, D] into it. The network's
    /// parameters are restored exactly afterwards.
    /// </summary>
    public double Distance(ReadOnlySpan<float> synthetic, ReadOnlySpan<int> syntheticLabels, int nSyn, ReadOnlySpan<float> real,
        ReadOnlySpan<int> realLabels, int nReal, Span<float> syntheticGradient)
    {
        Accelerator acc = net.Acc;
        long p = net.ParameterCount;
        net.LossAndGradients(real, realLabels, nReal, loss);
        acc.Copy(realGrad.All, net.Grads.All);
        net.LossAndGradients(synthetic, syntheticLabels, nSyn, loss);
        acc.Scale(realGrad.All, -1f, p);
        acc.Add(difference.All, net.Grads.All, realGrad.All, p);   // g_syn - g_real
        acc.Zero(scalar.All);
        acc.SumOfSquares(scalar.All, difference.All, p);
        acc.Download(scalar.All, hostScalar);
        double distance = hostScalar[0];
        if (syntheticGradient.IsEmpty)
        {
            return distance;
        }

        int size = nSyn * net.InputSize;
        syntheticGradient = syntheticGradient[..size];
        double uNorm = 2 * Math.Sqrt(distance);
        if (uNorm == 0)
        {
            syntheticGradient.Clear();
            return distance;
        }

        if (plus.Length < size)
        {
            plus = new float[size];
            minus = new float[size];
        }

        double e = radius / uNorm;
        acc.Copy(theta.All, net.Params.All);
        acc.Copy(perturbation.All, difference.All);
        acc.Scale(perturbation.All, (float)(2 * e), p);            // e u
        acc.Add(net.Params.All, theta.All, perturbation.All, p);    // theta + e u
        net.LossAndGradients(synthetic, syntheticLabels, nSyn, loss, inputGradient: plus);
        acc.Scale(perturbation.All, -1f, p);
        acc.Add(net.Params.All, theta.All, perturbation.All, p);    // theta - e u
        net.LossAndGradients(synthetic, syntheticLabels, nSyn, loss, inputGradient: minus);
        acc.Copy(net.Params.All, theta.All);
        for (int i = 0; i < size; i++)
        {
            syntheticGradient[i] = (float)((plus[i] - (double)minus[i]) / (2 * e));
        }

        return distance;
    }

    public void Dispose()
    {
        realGrad.Dispose();
        difference.Dispose();
        theta.Dispose();
        perturbation.Dispose();
        scalar.Dispose();
    }
}

/// <summary>Which network's gradients are matched.</summary>
internal enum MatchingMode
{
    /// <summary>A fixed network (the teacher's, or one trained by BC on the full data): never updated.</summary>
    Frozen,

    /// <summary>A student trained on the synthetic set after every outer step (the paper code's mode B).</summary>
    Live,
}

/// <summary>Settings of a distillation run (defaults: the paper code's where it has them).</summary>
internal sealed record DistillOptions
{
    /// <summary>Outer steps (one SGD update of the states each).</summary>
    public int OuterSteps { get; init; } = 200;

    /// <summary>Real rows per class per outer step (fewer when the class has fewer).</summary>
    public int RealBatch { get; init; } = 256;

    /// <summary>SGD step size on the states.</summary>
    public float LearningRate { get; init; } = 0.1f;

    /// <summary>SGD momentum on the states.</summary>
    public float Momentum { get; init; } = 0.5f;

    /// <summary>The BC loss whose gradients are matched.</summary>
    public BcLoss Loss { get; init; } = BcLoss.Mse;

    /// <summary>Live mode: full-batch Adam steps of the student on the synthetic set after each outer step.</summary>
    public int StudentSteps { get; init; } = 10;

    /// <summary>Live mode: the student's Adam step size.</summary>
    public float StudentLearningRate { get; init; } = 5e-3f;

    /// <summary>
    /// Live mode: re-initialise the student from a fresh seed every this many outer steps (0: never, the paper code's
    /// mode B). Re-sampling the network is what the original gradient-matching method does (Zhao et al. 2021), so the
    /// set is matched along many short training runs instead of one.
    /// </summary>
    public int ReinitializeEvery { get; init; }

    /// <summary>
    /// Keep the states inside the range the real observations span (a projection after every SGD step), so they stay
    /// plausible observations; off, they may take any value.
    /// </summary>
    public bool ClampToDataRange { get; init; } = true;

    /// <summary>Norm of the parameter perturbation of the finite-difference Hessian-vector product.</summary>
    public double HvpRadius { get; init; } = 1e-2;

    /// <summary>Seed of the real batches.</summary>
    public ulong Seed { get; init; } = 1;
}

/// <summary>
/// Dataset distillation by gradient matching (arXiv:2407.20299): every outer step draws a real batch per action class,
/// sums the classes' distances, and takes one SGD-with-momentum step on the synthetic states; labels stay fixed.
/// </summary>
internal sealed class Distiller : IDisposable
{
    private readonly OfflineDataset data;
    private readonly SyntheticSet set;
    private readonly MlpPolicy net;
    private readonly MatchingMode mode;
    private readonly DistillOptions options;
    private readonly GradientMatcher matcher;
    private readonly MlpAdam? studentAdam;
    private readonly int[][] rowsByAction;
    private readonly float[] velocity, gradient, realBatch;
    private readonly int[] realLabels;
    private readonly float lowest, highest;   // the real observations' range
    private readonly IReadOnlyList<float[]>? checkpoints;
    private SplitMix64 random;

    /// <param name="data">The real data.</param>
    /// <param name="set">The synthetic set, updated in place.</param>
    /// <param name="net">The matching network: frozen, or the live student (trained here).</param>
    /// <param name="mode">Frozen or live.</param>
    /// <param name="options">Settings.</param>
    /// <param name="checkpoints">
    /// Frozen mode only: several parameter vectors of <paramref name="net"/>'s shape (e.g. checkpoints along a BC run from a
    /// random initialisation to convergence); outer step t matches the gradients of checkpoint <c>t mod K</c>, so the set is
    /// matched where a fresh student's training passes, not only at the end of it. Null: <paramref name="net"/>'s own parameters.
    /// </param>
    public Distiller(OfflineDataset data, SyntheticSet set, MlpPolicy net, MatchingMode mode, DistillOptions options,
        IReadOnlyList<float[]>? checkpoints = null)
    {
        if (options.OuterSteps < 0 || options.RealBatch <= 0 || !(options.LearningRate > 0) || options.Momentum is < 0 or >= 1 || options.StudentSteps < 0)
        {
            throw new EngineException("distillation: outer steps and student steps must not be negative, the real batch and learning rate positive, momentum in [0, 1)");
        }

        if (set.ObservationSize != data.ObservationSize || net.InputSize != data.ObservationSize || net.Actions != data.ActionCount)
        {
            throw new EngineException("distillation: the synthetic set, the network and the data disagree on the observation size or the action count");
        }

        int maxBucket = set.BucketCount.Max();
        if (Math.Max(maxBucket, options.RealBatch) > net.MaxBatch || set.Count > net.MaxBatch)
        {
            throw new EngineException($"distillation: the network's batch ({net.MaxBatch}) must hold the synthetic set ({set.Count}) and a real batch ({options.RealBatch})");
        }

        if (checkpoints is not null && (mode != MatchingMode.Frozen || checkpoints.Count == 0 || checkpoints.Any(c => c.Length != net.ParameterCount)))
        {
            throw new EngineException($"distillation: checkpoints are for frozen mode, at least one, each of {net.ParameterCount} parameters");
        }

        this.checkpoints = checkpoints;
        this.data = data;
        this.set = set;
        this.net = net;
        this.mode = mode;
        this.options = options;
        matcher = new GradientMatcher(net, options.Loss, options.HvpRadius);
        studentAdam = mode == MatchingMode.Live ? new MlpAdam(net) : null;
        rowsByAction = Enumerable.Range(0, data.ActionCount).Select(data.RowsOfAction).ToArray();
        velocity = new float[set.States.Length];
        gradient = new float[set.States.Length];
        realBatch = new float[options.RealBatch * data.ObservationSize];
        realLabels = new int[options.RealBatch];
        random = new SplitMix64(options.Seed);
        lowest = options.ClampToDataRange ? data.Observations.Min() : float.NegativeInfinity;
        highest = options.ClampToDataRange ? data.Observations.Max() : float.PositiveInfinity;
    }

    /// <summary>Outer steps taken.</summary>
    public int StepsDone { get; private set; }

    /// <summary>One outer step; returns the summed distance before the update.</summary>
    public double Step()
    {
        int d = data.ObservationSize;
        if (mode == MatchingMode.Live && options.ReinitializeEvery > 0 && StepsDone % options.ReinitializeEvery == 0)
        {
            net.Initialize(random.NextUInt64());
            studentAdam!.Reset();
        }

        if (checkpoints is not null)
        {
            net.SetParameters(checkpoints[StepsDone % checkpoints.Count]);
        }

        double total = 0;
        for (int action = 0; action < data.ActionCount; action++)
        {
            int n = set.BucketCount[action];
            if (n == 0)
            {
                continue;
            }

            int nReal = DrawRealBatch(action);
            int offset = set.BucketStart[action] * d;
            total += matcher.Distance(set.States.AsSpan(offset, n * d), set.Labels.Slice(set.BucketStart[action], n), n, realBatch, realLabels, nReal,
                gradient.AsSpan(offset, n * d));
        }

        // SGD with momentum, PyTorch's form: v = mu v + g; S -= lr v; then the projection onto the data's range.
        for (int i = 0; i < velocity.Length; i++)
        {
            velocity[i] = options.Momentum * velocity[i] + gradient[i];
            set.States[i] = Math.Clamp(set.States[i] - options.LearningRate * velocity[i], lowest, highest);
        }

        if (studentAdam is not null)
        {
            for (int s = 0; s < options.StudentSteps; s++)
            {
                net.LossAndGradients(set.States, set.Labels, set.Count, options.Loss);
                studentAdam.Step(options.StudentLearningRate);
            }
        }

        StepsDone++;
        return total;
    }

    /// <summary>Runs all outer steps; returns the distance of each.</summary>
    public double[] Run()
    {
        var distances = new double[options.OuterSteps];
        for (int i = 0; i < options.OuterSteps; i++)
        {
            distances[i] = Step();
        }

        return distances;
    }

    public void Dispose()
    {
        matcher.Dispose();
        studentAdam?.Dispose();
    }

    private int DrawRealBatch(int action)
    {
        int[] pool = rowsByAction[action];
        int d = data.ObservationSize;
        int n = Math.Min(options.RealBatch, pool.Length);
        // A partial Fisher-Yates: the first n entries become a uniform sample without replacement.
        for (int i = 0; i < n; i++)
        {
            int j = i + random.NextInt(pool.Length - i);
            (pool[i], pool[j]) = (pool[j], pool[i]);
            data.Observation(pool[i]).CopyTo(realBatch.AsSpan(i * d, d));
            realLabels[i] = action;
        }

        return n;
    }
}

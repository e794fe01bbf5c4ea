using Engine.Core;

namespace Engine.Rl;

/// <summary>Which policy produced a response.</summary>
internal enum RolloutSource
{
    /// <summary>The policy being trained, through its own sampler (on-policy).</summary>
    Policy,

    /// <summary>A frozen guiding policy (off-policy; mixed-policy DAPO).</summary>
    Guide,
}

/// <summary>
/// One sampled response as the RL step sees it on the host: its tokens, where it came from, its
/// reward and scalars. What is per token and computed on the device (reference and teacher
/// log-probs, weights) lives in the <see cref="RolloutBatch"/>'s columns instead.
/// </summary>
internal sealed class RolloutSequence
{
    /// <summary>Index of the prompt group in the step's batch.</summary>
    public int Group { get; set; }

    public required int[] Prompt { get; init; }

    public required int[] Response { get; init; }

    /// <summary>Log-prob of each response token under the policy that sampled it (the sampler's temperature-1 value).</summary>
    public required float[] BehaviourLogProbs { get; init; }

    /// <summary>Loss mask per response token (0 when overlong filtering drops the response).</summary>
    public required float[] Mask { get; init; }

    /// <summary>The policy that produced the response.</summary>
    public RolloutSource Source { get; init; } = RolloutSource.Policy;

    public double Reward { get; set; }

    /// <summary>The verifier accepted the response.</summary>
    public bool Correct { get; set; }

    /// <summary>Cut at max_new_tokens.</summary>
    public bool Truncated { get; init; }

    public double Advantage { get; set; }

    public int Length => Prompt.Length + Response.Length;
}

/// <summary>The per-token columns of a <see cref="RolloutBatch"/>.</summary>
internal enum RolloutColumn
{
    /// <summary>Log-probs under the policy that produced each token (the sampler's record).</summary>
    BehaviourLogp,

    /// <summary>Log-probs under pi_old, the policy at sampling time (the ratio's denominator); equal to the behaviour's on-policy.</summary>
    OldLogp,

    /// <summary>The token's advantage (its sequence's, broadcast).</summary>
    Advantage,

    /// <summary>1 where the token counts (response tokens not filtered out), 0 otherwise.</summary>
    LossMask,

    /// <summary>Aggregation weight of the policy-gradient terms for the current mini-batch.</summary>
    Weight,

    /// <summary>Importance weight of off-policy tokens (1 on-policy).</summary>
    ImportanceWeight,

    /// <summary>Log-probs under the frozen reference (KL term).</summary>
    RefLogp,

    /// <summary>Log-probs under the frozen teacher (KDRL).</summary>
    TeacherLogp,

    /// <summary>1 where the distillation term applies (reward-guided masking), 0 otherwise.</summary>
    KdMask,

    /// <summary>Aggregation weight of the distillation term for the current mini-batch.</summary>
    KdWeight,

    /// <summary>Per-token scratch (e.g. KL estimates for the KL-in-reward variant).</summary>
    Scratch,
}

/// <summary>
/// The columnar rollout batch of one RL step: host metadata per sequence (tokens, rewards, lengths)
/// and one device column per <see cref="RolloutColumn"/> over the batch's response tokens, laid end
/// to end in sequence order ([sum of response lengths] + one trailing zero that padding gathers).
/// Micro-batches gather their rows from the columns on the device (<see cref="Gather"/>), and the
/// frozen models' scores are scattered into them (<see cref="Scatter"/>), so per-token values that
/// the device computes never travel through the host.
/// </summary>
internal sealed class RolloutBatch : IDisposable
{
    private const int LengthBucket = 16;
    private static readonly int ColumnCount = Enum.GetValues<RolloutColumn>().Length;
    private readonly Accelerator acc;
    private readonly List<RolloutSequence> sequences = [];
    private readonly List<int> offsets = [];
    private DeviceBuffer? columns;   // [ColumnCount, stride]
    private DeviceBuffer? index;     // [indexCapacity] int rows for GatherRows
    private long stride;
    private int indexCapacity;
    private int[]? uploadedRows;

    public RolloutBatch(Accelerator acc) => this.acc = acc;

    public IReadOnlyList<RolloutSequence> Sequences => sequences;

    /// <summary>Response tokens in the batch.</summary>
    public int Tokens { get; private set; }

    /// <summary>
    /// Starts a new batch over <paramref name="batch"/>: lays out the columns, zeroes them and uploads
    /// what the host knows per token (behaviour log-probs, pi_old = behaviour, the loss mask, importance weight 1).
    /// </summary>
    public void Reset(IEnumerable<RolloutSequence> batch)
    {
        sequences.Clear();
        offsets.Clear();
        Tokens = 0;
        foreach (RolloutSequence s in batch)
        {
            sequences.Add(s);
            offsets.Add(Tokens);
            Tokens += s.Response.Length;
        }

        if (columns is null || Tokens + 1 > stride)
        {
            columns?.Dispose();
            stride = Math.Max(Tokens + 1, 2 * stride);
            columns = acc.Allocate(ColumnCount * stride);
        }

        acc.Zero(columns.All);
        Upload(RolloutColumn.BehaviourLogp, s => s.BehaviourLogProbs);
        Upload(RolloutColumn.OldLogp, s => s.BehaviourLogProbs);
        Upload(RolloutColumn.LossMask, s => s.Mask);
        UploadPerSequence(RolloutColumn.ImportanceWeight, _ => 1f);
    }

    /// <summary>The first response token of sequence <paramref name="i"/> in the columns.</summary>
    public int Offset(int i) => offsets[i];

    /// <summary>A column over the batch's tokens and its trailing zero: [Tokens + 1].</summary>
    public Tensor Column(RolloutColumn column) => columns!.Slice((long)column * stride, Tokens + 1);

    /// <summary>Uploads a host value per response token of every sequence.</summary>
    public void Upload(RolloutColumn column, Func<RolloutSequence, float[]> values)
    {
        for (int i = 0; i < sequences.Count; i++)
        {
            Upload(column, i, values(sequences[i]));
        }
    }

    /// <summary>Uploads a host value per response token of sequence <paramref name="sequence"/>.</summary>
    public void Upload(RolloutColumn column, int sequence, float[] values)
    {
        if (values.Length != sequences[sequence].Response.Length)
        {
            throw new InvalidOperationException($"column {column}: {values.Length} values for a response of {sequences[sequence].Response.Length} tokens");
        }

        if (values.Length > 0)
        {
            acc.Upload(columns!.Slice((long)column * stride + offsets[sequence], values.Length), values);
        }
    }

    /// <summary>Uploads one value per sequence, broadcast to its response tokens.</summary>
    public void UploadPerSequence(RolloutColumn column, Func<RolloutSequence, float> value) =>
        Upload(column, s =>
        {
            var v = new float[s.Response.Length];
            Array.Fill(v, value(s));
            return v;
        });

    /// <summary>Downloads a column's values of the batch's tokens.</summary>
    public float[] Download(RolloutColumn column)
    {
        var result = new float[Tokens];
        if (Tokens > 0)
        {
            acc.Download(columns!.Slice((long)column * stride, Tokens), result);
        }

        return result;
    }

    /// <summary>
    /// Right-padded rows and next-token targets of the sequences <paramref name="which"/> for a model of
    /// <paramref name="maxPositions"/>, and for each of the B*T row positions the column entry it reads
    /// (the response token that row position predicts, or the trailing zero).
    /// </summary>
    public MicroBatchLayout Layout(IReadOnlyList<int> which, int maxPositions)
    {
        int count = which.Count, longest = 0;
        foreach (int i in which)
        {
            longest = Math.Max(longest, sequences[i].Length);
        }

        int t = Math.Min(maxPositions, (longest + LengthBucket - 1) / LengthBucket * LengthBucket);
        t = Math.Max(t, longest);
        var tokens = new int[count * t];
        var targets = new int[count * t];
        var rows = new int[count * t];
        Array.Fill(targets, -1);
        Array.Fill(rows, Tokens);
        for (int r = 0; r < count; r++)
        {
            RolloutSequence s = sequences[which[r]];
            s.Prompt.CopyTo(tokens, r * t);
            s.Response.CopyTo(tokens, r * t + s.Prompt.Length);
            for (int j = 0; j < s.Response.Length; j++)
            {
                int position = r * t + s.Prompt.Length - 1 + j;
                targets[position] = s.Response[j];
                rows[position] = offsets[which[r]] + j;
            }
        }

        return new MicroBatchLayout(count, t, tokens, targets, rows);
    }

    /// <summary>Gathers <paramref name="column"/> into the micro-batch's [B*T] row positions (0 where no response token is predicted).</summary>
    public void Gather(Tensor destination, RolloutColumn column, MicroBatchLayout layout)
    {
        Tensor rows = Index(layout.Rows);
        acc.GatherRows(destination, Column(column), rows, layout.Rows.Length, 1);
    }

    /// <summary>
    /// Writes per-row-position values <paramref name="source"/> [B*T] of a micro-batch made of the
    /// consecutive sequences [first, first + B) into <paramref name="column"/>.
    /// </summary>
    public void Scatter(RolloutColumn column, Tensor source, int first, MicroBatchLayout layout)
    {
        int from = offsets[first], to = first + layout.B < sequences.Count ? offsets[first + layout.B] : Tokens;
        if (to == from)
        {
            return;
        }

        var positions = new int[to - from];
        for (int p = 0; p < layout.Rows.Length; p++)
        {
            int k = layout.Rows[p];
            if (k != Tokens)
            {
                positions[k - from] = p;
            }
        }

        acc.GatherRows(columns!.Slice((long)column * stride + from, to - from), source, Index(positions), to - from, 1);
    }

    public void Dispose()
    {
        columns?.Dispose();
        index?.Dispose();
    }

    /// <summary>The rows on the device; a micro-batch gathering several columns uploads its rows once.</summary>
    private Tensor Index(int[] values)
    {
        if (index is null || values.Length > indexCapacity)
        {
            index?.Dispose();
            indexCapacity = Math.Max(values.Length, 2 * indexCapacity);
            index = acc.Allocate(indexCapacity, DType.I32);
            uploadedRows = null;
        }

        Tensor t = index.Slice(0, values.Length);
        if (!ReferenceEquals(values, uploadedRows))
        {
            acc.Upload(t, values);
            uploadedRows = values;
        }

        return t;
    }
}

/// <summary>
/// One micro-batch's packing: B right-padded rows of T tokens, next-token targets (-1: none) and, per
/// row position, the <see cref="RolloutBatch"/> column entry it gathers.
/// </summary>
internal sealed record MicroBatchLayout(int B, int T, int[] TokenIds, int[] Targets, int[] Rows);

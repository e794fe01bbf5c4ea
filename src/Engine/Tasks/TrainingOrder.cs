namespace Engine.Tasks;

/// <summary>
/// A task whose training order the trainer's seed chooses (see <see cref="TrainingOrder"/>).
/// </summary>
internal interface ISeededTrainingOrder
{
    /// <summary>Training example <paramref name="index"/> in the order keyed by <paramref name="orderSeed"/>.</summary>
    TaskExample TrainExample(ulong orderSeed, long index);
}

/// <summary>
/// The order in which the trainers take training examples, keyed by the trainer's seed (sft.seed, rl.seed), so that
/// runs with different seeds see different data while the task itself (task.seed: a generator, a dataset's
/// train/eval split) stays the same: a dataset is reshuffled every epoch by a permutation keyed by (seed, epoch);
/// a built-in generated task, whose examples are independent draws, is read from a seed-dependent point of its
/// example stream; a task mixture applies this to each of its tasks. An embedding application's own
/// <see cref="ITask"/> keeps its own order (<c>Example(Train, i)</c> for i = 0, 1, 2, ...), which it controls.
/// </summary>
internal static class TrainingOrder
{
    /// <summary>Training example <paramref name="index"/> of <paramref name="task"/> in the order of <paramref name="seed"/>.</summary>
    public static TaskExample Example(ITask task, ulong seed, long index) =>
        task is ISeededTrainingOrder seeded ? seeded.TrainExample(seed, index) : task.Example(DataSplit.Train, index);

    /// <summary>
    /// Where <paramref name="seed"/>'s order starts in a generated task's training stream: a keyed offset below
    /// 2^62, so that offset + index cannot overflow for any index a run reaches.
    /// </summary>
    public static long StreamStart(ulong seed) => (long)(TaskRandom.Mix(seed ^ 0x6F_7264_6572UL) >> 2); // "order"

    /// <summary>Example <paramref name="index"/> of a generated task's order <paramref name="seed"/>.</summary>
    public static TaskExample FromStream(ITask task, ulong seed, long index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        return task.Example(DataSplit.Train, StreamStart(seed) + index);
    }
}

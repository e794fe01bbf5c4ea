using Engine.Tasks;

namespace Engine.Tests.Tasks;

/// <summary>
/// The properties every built-in task promises: determinism, disjoint splits, references that
/// score correct, an alphabet that covers prompts and references, a bound on reference lengths.
/// </summary>
public sealed class TaskContractTests
{
    /// <summary>The built-in tasks with default and with non-default options.</summary>
    public static TheoryData<string> Configurations => [.. Tasks.Keys];

    private static readonly Dictionary<string, Func<ulong, ITask>> Tasks = new()
    {
        ["addition"] = seed => new AdditionTask(seed: seed),
        ["addition-4-6"] = seed => new AdditionTask(minDigits: 4, maxDigits: 6, seed: seed),
        ["sorting"] = seed => new SortingTask(seed: seed),
        ["sorting-1-3"] = seed => new SortingTask(minLength: 1, maxLength: 3, seed: seed),
        ["countdown"] = seed => new CountdownTask(seed: seed),
        ["countdown-4"] = seed => new CountdownTask(minCount: 4, maxCount: 4, minNumber: 1, maxNumber: 99, seed: seed),
        ["countdown-2-5"] = seed => new CountdownTask(minCount: 2, maxCount: 5, maxNumber: 12, maxTarget: 500, seed: seed),
    };

    private static string? CanonicalKey(ITask task, string prompt) => task switch
    {
        AdditionTask => AdditionTask.CanonicalKeyOf(prompt),
        SortingTask => SortingTask.CanonicalKeyOf(prompt),
        CountdownTask => CountdownTask.CanonicalKeyOf(prompt),
        _ => throw new ArgumentException("not a built-in task", nameof(task)),
    };

    [Theory]
    [MemberData(nameof(Configurations))]
    public void Same_index_gives_the_same_example_and_other_seeds_give_others(string config)
    {
        ITask a = Tasks[config](7), b = Tasks[config](7), other = Tasks[config](8);
        int differ = 0, differSplit = 0;
        for (long i = 0; i < 200; i++)
        {
            foreach (DataSplit split in new[] { DataSplit.Train, DataSplit.Test })
            {
                TaskExample x = a.Example(split, i);
                Assert.Equal(x, b.Example(split, i));
                Assert.Equal(x, a.Example(split, i)); // asking again (after other indices) changes nothing
                differ += x == other.Example(split, i) ? 0 : 1;
            }

            differSplit += a.Example(DataSplit.Train, i) == a.Example(DataSplit.Test, i) ? 0 : 1;
        }

        // Collisions between seeds happen only where the problem space is small.
        Assert.True(differ > 200, $"only {differ} of 400 examples differ between seeds 7 and 8");
        Assert.Equal(200, differSplit);
        // Indices far apart and large are fine too.
        Assert.Equal(a.Example(DataSplit.Train, long.MaxValue), b.Example(DataSplit.Train, long.MaxValue));
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void Train_and_test_share_no_problem_and_each_problem_hashes_to_its_split(string config)
    {
        const int N = 20_000;
        ITask task = Tasks[config](3);
        var trainPrompts = new HashSet<string>(StringComparer.Ordinal);
        var trainKeys = new HashSet<string>(StringComparer.Ordinal);
        for (long i = 0; i < N; i++)
        {
            string prompt = task.Example(DataSplit.Train, i).Prompt;
            string key = CanonicalKey(task, prompt)!;
            Assert.Equal(DataSplit.Train, TaskRandom.SplitOf(key));
            trainPrompts.Add(prompt);
            trainKeys.Add(key);
        }

        int distinctTest = 0;
        var testPrompts = new HashSet<string>(StringComparer.Ordinal);
        for (long i = 0; i < N; i++)
        {
            string prompt = task.Example(DataSplit.Test, i).Prompt;
            string key = CanonicalKey(task, prompt)!;
            Assert.Equal(DataSplit.Test, TaskRandom.SplitOf(key));
            Assert.DoesNotContain(prompt, trainPrompts);
            Assert.DoesNotContain(key, trainKeys);
            distinctTest += testPrompts.Add(prompt) ? 1 : 0;
        }

        Assert.True(distinctTest > 50, $"only {distinctTest} distinct test prompts");
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void References_score_correct_with_reward_1_and_fit_the_bounds(string config)
    {
        ITask task = Tasks[config](11);
        var alphabet = new HashSet<char>(task.Alphabet);
        Assert.Equal(task.Alphabet.Length, alphabet.Count); // no repeats (a character tokenizer needs that)
        int longest = 0;
        for (long i = 0; i < 5_000; i++)
        {
            foreach (DataSplit split in new[] { DataSplit.Train, DataSplit.Test })
            {
                TaskExample x = task.Example(split, i);
                Assert.Equal(new RewardResult(1, true), task.Score(x, x.Reference));
                Assert.Equal(new RewardResult(1, true), task.Score(x, " \t" + x.Reference + "\n "));
                Assert.False(task.Score(x, "").Correct);
                Assert.False(task.Score(x, x.Reference + x.Reference).Correct);
                foreach (char c in x.Prompt + x.Reference)
                {
                    Assert.Contains(c, alphabet);
                }

                longest = Math.Max(longest, x.Reference.Length);
            }
        }

        Assert.True(longest <= task.MaxResponseLength, $"reference of {longest} > bound {task.MaxResponseLength}");
    }

    [Fact]
    public void Max_response_length_is_reached_where_the_bound_is_tight()
    {
        // Addition and sorting bounds are exact; the countdown bound is for the fewest-parentheses form.
        ITask[] tight = [new AdditionTask(minDigits: 2, maxDigits: 2), new SortingTask(minLength: 3, maxLength: 5)];
        foreach (ITask task in tight)
        {
            int longest = 0;
            for (long i = 0; i < 2_000; i++)
            {
                longest = Math.Max(longest, task.Example(DataSplit.Train, i).Reference.Length);
            }

            Assert.Equal(task.MaxResponseLength, longest);
        }

        Assert.Equal(3, new AdditionTask(minDigits: 2, maxDigits: 2).MaxResponseLength);
        Assert.Equal(10, new CountdownTask().MaxResponseLength); // "(a-b)*c" style: 6 digits, 2 ops, 1 pair
        Assert.Equal(15, new CountdownTask(minCount: 4, maxCount: 4).MaxResponseLength);
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void Negative_index_and_foreign_prompts_are_rejected(string config)
    {
        ITask task = Tasks[config](0);
        Assert.Throws<ArgumentOutOfRangeException>(() => task.Example(DataSplit.Train, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => task.Example((DataSplit)7, 0));
        Assert.Throws<Engine.Core.EngineException>(() => task.Score(new TaskExample("hello", "x"), "x"));
    }

    [Fact]
    public void The_split_hash_and_the_generators_are_pinned()
    {
        // The split must never change silently (an old test set would leak into training), and
        // neither should the examples a seed gives. The hash is FNV-1a 64 then the SplitMix64 finaliser.
        static ulong Reference(string s)
        {
            ulong h = 14695981039346656037UL;
            foreach (char c in s)
            {
                h = (h ^ c) * 1099511628211UL;
            }

            ulong z = h + 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        foreach (string key in new[] { "", "addition:12+345", "countdown:3,7,12", "sorting:0123" })
        {
            Assert.Equal(Reference(key), TaskRandom.Hash(key));
        }

        Assert.Equal(589890005779031582UL, TaskRandom.Hash("addition:12+345"));
        Assert.Equal(10348087200733495005UL, TaskRandom.Hash("countdown:3,7,12"));

        Assert.Equal(new TaskExample("95+82=", "177"), new AdditionTask().Example(DataSplit.Train, 0));
        Assert.Equal(new TaskExample("961+16=", "977"), new AdditionTask().Example(DataSplit.Test, 1));
        Assert.Equal(new TaskExample("sort 271594=", "124579"), new SortingTask().Example(DataSplit.Train, 0));
        Assert.Equal(new TaskExample("sort 710=", "017"), new SortingTask().Example(DataSplit.Test, 1));
        Assert.Equal(new TaskExample("15,14,19>56=", "14*(19-15)"), new CountdownTask().Example(DataSplit.Train, 0));
        Assert.Equal(new TaskExample("17,2,16>66=", "(16+17)*2"), new CountdownTask().Example(DataSplit.Test, 0));
        Assert.Equal(new TaskExample("4,2,8,10>72=", "8*(4+10/2)"), new CountdownTask(minCount: 4, maxCount: 4).Example(DataSplit.Train, 1));
    }

    [Fact]
    public void A_problem_space_without_test_problems_is_an_error_not_a_hang()
    {
        // One-digit sorting has 10 problems (one per digit); find a digit-set configuration whose
        // problems are all train, by construction: length 1 keys are "sorting:0".."sorting:9".
        int testDigits = Enumerable.Range(0, 10).Count(d => TaskRandom.SplitOf("sorting:" + d) == DataSplit.Test);
        var task = new SortingTask(minLength: 1, maxLength: 1);
        if (testDigits == 0)
        {
            var e = Assert.Throws<Engine.Core.EngineException>(() => task.Example(DataSplit.Test, 0));
            Assert.Contains("no test problem", e.Message, StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal(DataSplit.Test, TaskRandom.SplitOf("sorting:" + task.Example(DataSplit.Test, 0).Reference));
        }

        // Countdown asks for targets no expression of two numbers 1..2 can reach.
        var impossible = new CountdownTask(minCount: 2, maxCount: 2, minNumber: 1, maxNumber: 2, minTarget: 50, maxTarget: 60);
        Assert.Throws<Engine.Core.EngineException>(() => impossible.Example(DataSplit.Train, 0));
    }
}

using Engine.Core;
using Engine.Tasks;

namespace Engine.Tests.Tasks;

/// <summary>Addition and digit sorting: formats, the exact checkers, options, distributions.</summary>
public sealed class AdditionAndSortingTaskTests
{
    private static readonly RewardResult Right = new(1, true);
    private static readonly RewardResult Wrong = new(0, false);

    [Fact]
    public void Addition_accepts_only_the_exact_sum_with_surrounding_whitespace()
    {
        var task = new AdditionTask();
        var x = new TaskExample("123+45=", "168");
        Assert.Equal(Right, task.Score(x, "168"));
        Assert.Equal(Right, task.Score(x, "  168\n"));
        Assert.Equal(Right, task.Score(new TaskExample("0+0=", "0"), "0"));
        Assert.Equal(Right, task.Score(new TaskExample("999+999=", "1998"), "1998"));
        string[] wrong =
        [
            "169", "167", "1680", "16", "0168", "+168", "-168", "168.", "168.0", "1 68", "168 168", "168=",
            "=168", "123+45=168", "168\0", "١٦٨", "１６８", "", "   ", "one hundred sixty-eight",
        ];
        foreach (string r in wrong)
        {
            Assert.Equal(Wrong, task.Score(x, r));
        }

        // The verdict comes from the prompt, not from the example's reference.
        Assert.Equal(Right, task.Score(new TaskExample("123+45=", "999"), "168"));
        Assert.Equal(Wrong, task.Score(new TaskExample("123+45=", "999"), "999"));
        Assert.Throws<ArgumentNullException>(() => task.Score(x, null!));
        Assert.Throws<ArgumentNullException>(() => task.Score(null!, "168"));
        foreach (string bad in new[] { "123+45", "+45=", "123+=", "12a+45=", "0123+45=", "123-45=" })
        {
            Assert.Throws<EngineException>(() => task.Score(new TaskExample(bad, "168"), "168"));
        }
    }

    [Fact]
    public void Addition_examples_have_the_documented_form_and_digit_distribution()
    {
        var task = new AdditionTask(minDigits: 2, maxDigits: 4, seed: 5);
        Assert.Equal("0123456789+=", task.Alphabet);
        Assert.Equal(5, task.MaxResponseLength);
        var digitCounts = new int[6];
        for (long i = 0; i < 20_000; i++)
        {
            TaskExample x = task.Example(i % 2 == 0 ? DataSplit.Train : DataSplit.Test, i);
            string[] parts = x.Prompt.TrimEnd('=').Split('+');
            Assert.Equal(2, parts.Length);
            Assert.EndsWith("=", x.Prompt, StringComparison.Ordinal);
            foreach (string p in parts)
            {
                Assert.InRange(p.Length, 2, 4);
                Assert.NotEqual('0', p[0]);
                digitCounts[p.Length]++;
            }

            Assert.Equal((long.Parse(parts[0]) + long.Parse(parts[1])).ToString(), x.Reference);
        }

        // Digit counts uniform: each of 2, 3, 4 about a third of 40 000 operands.
        for (int d = 2; d <= 4; d++)
        {
            Assert.InRange(digitCounts[d], 12_000, 14_700);
        }

        // One-digit operands include 0.
        var one = new AdditionTask(minDigits: 1, maxDigits: 1);
        var operands = new HashSet<string>();
        for (long i = 0; i < 2_000; i++)
        {
            operands.UnionWith(one.Example(DataSplit.Train, i).Prompt.TrimEnd('=').Split('+'));
        }

        Assert.Equal(10, operands.Count);
    }

    [Fact]
    public void Addition_handles_the_largest_operands()
    {
        var task = new AdditionTask(minDigits: AdditionTask.MaxSupportedDigits, maxDigits: AdditionTask.MaxSupportedDigits);
        for (long i = 0; i < 200; i++)
        {
            TaskExample x = task.Example(DataSplit.Test, i);
            string[] parts = x.Prompt.TrimEnd('=').Split('+');
            Assert.Equal((decimal.Parse(parts[0]) + decimal.Parse(parts[1])).ToString(), x.Reference);
            Assert.Equal(Right, task.Score(x, x.Reference));
        }
    }

    [Fact]
    public void Sorting_accepts_only_the_digits_in_ascending_order()
    {
        var task = new SortingTask();
        var x = new TaskExample("sort 3817=", "1378");
        Assert.Equal(Right, task.Score(x, "1378"));
        Assert.Equal(Right, task.Score(x, "\t1378 "));
        Assert.Equal(Right, task.Score(new TaskExample("sort 3003=", "0033"), "0033"));
        string[] wrong = ["8731", "1387", "137", "13788", "01378", "1 378", "1,3,7,8", "sort 1378", "1378=", "", "3817", "１３７８"];
        foreach (string r in wrong)
        {
            Assert.Equal(Wrong, task.Score(x, r));
        }

        Assert.Equal(Wrong, task.Score(new TaskExample("sort 3003=", "0033"), "33"));
        Assert.Equal(Right, task.Score(new TaskExample("sort 3817=", "wrong"), "1378"));
        foreach (string bad in new[] { "sort =", "sort 38a7=", "sort 3817", "3817=", "Sort 3817=" })
        {
            Assert.Throws<EngineException>(() => task.Score(new TaskExample(bad, "1378"), "1378"));
        }
    }

    [Fact]
    public void Sorting_examples_have_the_documented_form_and_distribution()
    {
        var task = new SortingTask(minLength: 3, maxLength: 7, seed: 9);
        Assert.Equal(7, task.MaxResponseLength);
        var lengths = new int[8];
        var digits = new int[10];
        for (long i = 0; i < 20_000; i++)
        {
            // Test problems are a fixed tenth of the digit multisets (a few hundred of the short
            // ones), which tilts the digit frequencies of the test split; check uniformity on train.
            TaskExample x = task.Example(DataSplit.Train, i);
            Assert.Equal(DataSplit.Test, TaskRandom.SplitOf("sorting:" + task.Example(DataSplit.Test, i).Reference));
            Assert.StartsWith("sort ", x.Prompt, StringComparison.Ordinal);
            Assert.EndsWith("=", x.Prompt, StringComparison.Ordinal);
            string input = x.Prompt[5..^1];
            Assert.InRange(input.Length, 3, 7);
            Assert.All(input, c => Assert.InRange(c, '0', '9'));
            Assert.Equal(new string([.. input.Order()]), x.Reference);
            lengths[input.Length]++;
            foreach (char c in input)
            {
                digits[c - '0']++;
            }
        }

        for (int n = 3; n <= 7; n++)
        {
            Assert.InRange(lengths[n], 3_500, 4_500); // 4 000 expected
        }

        int total = digits.Sum();
        Assert.All(digits, d => Assert.InRange(d, total / 10 * 0.95, total / 10 * 1.05));
    }

    [Fact]
    public void Options_are_validated()
    {
        Assert.Throws<EngineException>(() => new AdditionTask(minDigits: 0));
        Assert.Throws<EngineException>(() => new AdditionTask(minDigits: 3, maxDigits: 2));
        Assert.Throws<EngineException>(() => new AdditionTask(maxDigits: AdditionTask.MaxSupportedDigits + 1));
        Assert.Throws<EngineException>(() => new SortingTask(minLength: 0));
        Assert.Throws<EngineException>(() => new SortingTask(minLength: 5, maxLength: 4));
        Assert.Throws<EngineException>(() => new SortingTask(maxLength: SortingTask.MaxSupportedLength + 1));
        var e = Assert.Throws<EngineException>(() => new AdditionTask(minDigits: 3, maxDigits: 2));
        Assert.Contains("MaxDigits", e.Message, StringComparison.Ordinal);
    }
}

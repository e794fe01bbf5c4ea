using Engine.Core;
using Engine.Tasks;

namespace Engine.Tests.Tasks;

/// <summary>Countdown: the expression checker's verdicts, rewards, the generator's guarantees.</summary>
public sealed class CountdownTaskTests
{
    private static ExpressionVerdict Verdict(string response, long[] numbers, long target, out bool hit) =>
        CountdownTask.Check(response, numbers, target, out hit);

    [Theory]
    [InlineData("3*7+12")]
    [InlineData("12+7*3")]
    [InlineData("12+3*7")]
    [InlineData("(3*7)+12")]
    [InlineData(" 12 + 3 * 7 ")]
    [InlineData("((12))+((7)*(3))")]
    [InlineData("12+7*3/1*1")]
    public void Correct_expressions_score_1(string response)
    {
        var task = new CountdownTask(formatReward: 0.1);
        var x = new TaskExample(response.EndsWith("*1", StringComparison.Ordinal) ? "1,1,3,7,12>33=" : "3,7,12>33=", "3*7+12");
        Assert.Equal(new RewardResult(1, true), task.Score(x, response));
    }

    [Fact]
    public void Rational_and_negative_intermediates_are_allowed()
    {
        var task = new CountdownTask();
        Assert.Equal(new RewardResult(1, true), task.Score(new TaskExample("1,3,4,6>24=", "?"), "6/(1-3/4)"));
        Assert.Equal(new RewardResult(1, true), task.Score(new TaskExample("3,7,12>8=", "?"), "3-7+12"));
        Assert.Equal(new RewardResult(1, true), task.Score(new TaskExample("3,7,12>28=", "?"), "7/3*12"));
        // Left associativity: 12-7-3 = 2 (not 8), 12/3/2 = 2 (not 8).
        Assert.Equal(new RewardResult(1, true), task.Score(new TaskExample("3,7,12>2=", "?"), "12-7-3"));
        Assert.Equal(new RewardResult(0, false), task.Score(new TaskExample("3,7,12>8=", "?"), "12-7-3"));
        Assert.Equal(new RewardResult(1, true), task.Score(new TaskExample("2,3,12>2=", "?"), "12/3/2"));
        Assert.Equal(new RewardResult(0, false), task.Score(new TaskExample("2,3,12>8=", "?"), "12/3/2"));
        // A fractional final value is not the target.
        Assert.Equal(new RewardResult(0, false), task.Score(new TaskExample("2,3,4>1=", "?"), "4/3-2/2"));
    }

    [Theory]
    // Wrong value (well-formed, right numbers): the format reward.
    [InlineData("3*7-12", nameof(ExpressionVerdict.Evaluated))]
    [InlineData("(3+7)*12", nameof(ExpressionVerdict.Evaluated))]
    [InlineData("12/7*3", nameof(ExpressionVerdict.Evaluated))]
    // Reused, missing and extra numbers.
    [InlineData("3*3+12", nameof(ExpressionVerdict.WrongNumbers))]
    [InlineData("3*7+12+3", nameof(ExpressionVerdict.WrongNumbers))]
    [InlineData("3*7", nameof(ExpressionVerdict.WrongNumbers))]
    [InlineData("33", nameof(ExpressionVerdict.WrongNumbers))]
    [InlineData("3*7+12+0", nameof(ExpressionVerdict.WrongNumbers))]
    [InlineData("3*7+12*1", nameof(ExpressionVerdict.WrongNumbers))]
    [InlineData("3*7+13-1", nameof(ExpressionVerdict.WrongNumbers))]
    [InlineData("37+12", nameof(ExpressionVerdict.WrongNumbers))]
    [InlineData("123456789012345678901234567890-123456789012345678901234567860+3", nameof(ExpressionVerdict.WrongNumbers))]
    // Bad syntax.
    [InlineData("", nameof(ExpressionVerdict.Malformed))]
    [InlineData("   ", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3*+7+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3 7 12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3*7+", nameof(ExpressionVerdict.Malformed))]
    [InlineData("*3*7+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("-3*7+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3*-7+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3x7+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3×7+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3*7+12=33", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3.0*7+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("03*7+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3(7)+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3*7(+12)", nameof(ExpressionVerdict.Malformed))]
    [InlineData("()+3*7+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3**7+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3^7+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3,7,12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3*7+12 3", nameof(ExpressionVerdict.Malformed))]
    // Unbalanced parentheses.
    [InlineData("(3*7+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("3*7)+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("((3*7)+12", nameof(ExpressionVerdict.Malformed))]
    [InlineData("(3*7)+12)", nameof(ExpressionVerdict.Malformed))]
    [InlineData(")3*7+12(", nameof(ExpressionVerdict.Malformed))]
    public void Wrong_responses_get_the_documented_verdict_and_reward(string response, string verdict)
    {
        var expected = Enum.Parse<ExpressionVerdict>(verdict);
        long[] numbers = [3, 7, 12];
        Assert.Equal(expected, Verdict(response, numbers, 33, out bool hit));
        Assert.False(hit);
        var x = new TaskExample("3,7,12>33=", "3*7+12");
        RewardResult strict = new CountdownTask().Score(x, response);
        RewardResult lenient = new CountdownTask(formatReward: 0.1).Score(x, response);
        Assert.Equal(new RewardResult(0, false), strict);
        Assert.Equal(new RewardResult(expected == ExpressionVerdict.Evaluated ? 0.1 : 0, false), lenient);
    }

    [Fact]
    public void Division_by_zero_is_wrong_without_format_reward()
    {
        var task = new CountdownTask(formatReward: 0.1);
        var x = new TaskExample("3,3,7>7=", "7*3/3");
        Assert.Equal(ExpressionVerdict.DivisionByZero, Verdict("7/(3-3)", [3, 3, 7], 7, out _));
        Assert.Equal(ExpressionVerdict.DivisionByZero, Verdict("7/(3-3)*0", [0, 3, 3, 7], 0, out _));
        Assert.Equal(new RewardResult(0, false), task.Score(x, "7/(3-3)"));
        Assert.Equal(new RewardResult(0, false), task.Score(x, "(3-3)/(3-3)+7")); // wrong numbers too
        Assert.Equal(new RewardResult(1, true), task.Score(x, "7*3/3"));
        Assert.Equal(new RewardResult(1, true), task.Score(x, "7+(3-3)"));
        Assert.Equal(new RewardResult(0.1, false), task.Score(x, "(3-3)/7"));
    }

    [Fact]
    public void Repeated_numbers_must_be_used_as_often_as_given()
    {
        var task = new CountdownTask();
        var x = new TaskExample("4,4,5>24=", "5*4+4");
        Assert.Equal(new RewardResult(1, true), task.Score(x, "5*4+4"));
        Assert.Equal(new RewardResult(1, true), task.Score(x, "4+4*5"));
        Assert.Equal(new RewardResult(0, false), task.Score(x, "5*4+4+4-4"));
        Assert.Equal(new RewardResult(0, false), task.Score(x, "4*5+5-1"));
        Assert.Equal(ExpressionVerdict.WrongNumbers, Verdict("4*5+4*1", [4, 4, 5], 24, out _));
        Assert.Equal(ExpressionVerdict.WrongNumbers, Verdict("4*5", [4, 4, 5], 24, out _));
    }

    [Fact]
    public void Deep_nesting_and_long_inputs_are_handled()
    {
        long[] numbers = [3, 7, 12];
        string nested = new string('(', 10) + "3*7" + new string(')', 10) + "+12";
        Assert.Equal(ExpressionVerdict.Evaluated, Verdict(nested, numbers, 33, out bool hit));
        Assert.True(hit);
        int over = ArithmeticExpression.MaxDepth + 1;
        string deep = new string('(', over) + "3*7" + new string(')', over) + "+12";
        Assert.Equal(ExpressionVerdict.Malformed, Verdict(deep, numbers, 33, out _));
        string many = "3*7+12" + string.Concat(Enumerable.Repeat("*999999999999", 100_000));
        Assert.Equal(ExpressionVerdict.WrongNumbers, Verdict(many, numbers, 33, out _));
        Assert.Equal(ExpressionVerdict.Malformed, Verdict(many + "+", numbers, 33, out _));
    }

    [Fact]
    public void Prompts_are_parsed_and_foreign_ones_rejected()
    {
        Assert.True(CountdownTask.TryParsePrompt("3,7,12>33=", out long[] n, out long t));
        Assert.Equal([3L, 7, 12], n);
        Assert.Equal(33, t);
        foreach (string bad in new[] { "3,7,12>33", "3,7,12=33=", ">33=", "3,,7>33=", "3,7,>33=", "3,7,12>=", "a,7>3=", "3,07>3=", "1,2,3,4,5,6,7>3=" })
        {
            Assert.False(CountdownTask.TryParsePrompt(bad, out _, out _), bad);
            Assert.Throws<EngineException>(() => new CountdownTask().Score(new TaskExample(bad, ""), "1"));
        }
    }

    [Theory]
    [InlineData(3, 3, 1, 20, 1, 100)]
    [InlineData(4, 4, 1, 20, 1, 100)]
    [InlineData(2, 5, 5, 50, 10, 300)]
    public void Examples_are_solvable_and_within_the_options(int minCount, int maxCount, int minNumber, int maxNumber, int minTarget, int maxTarget)
    {
        var task = new CountdownTask(minCount, maxCount, minNumber, maxNumber, minTarget, maxTarget, seed: 4);
        var counts = new HashSet<int>();
        var targets = new HashSet<long>();
        var numbersSeen = new HashSet<long>();
        for (long i = 0; i < 3_000; i++)
        {
            TaskExample x = task.Example(i % 3 == 0 ? DataSplit.Test : DataSplit.Train, i);
            Assert.True(CountdownTask.TryParsePrompt(x.Prompt, out long[] numbers, out long target), x.Prompt);
            Assert.InRange(numbers.Length, minCount, maxCount);
            Assert.All(numbers, v => Assert.InRange(v, minNumber, maxNumber));
            Assert.InRange(target, minTarget, maxTarget);
            Assert.DoesNotContain(target, numbers);
            Assert.Equal(ExpressionVerdict.Evaluated, Verdict(x.Reference, numbers, target, out bool hit));
            Assert.True(hit, $"{x.Prompt} {x.Reference}");
            counts.Add(numbers.Length);
            targets.Add(target);
            numbersSeen.UnionWith(numbers);
        }

        Assert.Equal(maxCount - minCount + 1, counts.Count);
        Assert.Equal(maxNumber - minNumber + 1, numbersSeen.Count);
        Assert.True(targets.Count > (maxTarget - minTarget + 1) / 2, $"only {targets.Count} distinct targets");
    }

    [Fact]
    public void References_use_the_fewest_parentheses()
    {
        // Removing any one pair of parentheses from a reference changes its value as a function of
        // its numbers: with the numbers replaced by generic values (distinct primes, each larger than
        // all smaller ones together, so no sum or difference cancels), the value differs.
        var task = new CountdownTask(minCount: 4, maxCount: 5, seed: 2);
        long[] primes = [7, 61, 509, 4003, 40009];
        int pairs = 0;
        for (long i = 0; i < 2_000; i++)
        {
            string r = task.Example(DataSplit.Train, i).Reference;
            for (int open = r.IndexOf('(', StringComparison.Ordinal); open >= 0; open = r.IndexOf('(', open + 1))
            {
                pairs++;
                int depth = 0, close = open;
                do
                {
                    depth += r[close] == '(' ? 1 : r[close] == ')' ? -1 : 0;
                    close++;
                }
                while (depth > 0);
                string stripped = r[..open] + r[(open + 1)..(close - 1)] + r[close..];
                Rational? value = Generic(r);
                Assert.NotNull(value);
                Assert.NotEqual(value, Generic(stripped));
            }
        }

        Assert.True(pairs > 200, $"only {pairs} pairs of parentheses");

        Rational? Generic(string expression)
        {
            int k = 0;
            string substituted = System.Text.RegularExpressions.Regex.Replace(expression, "[0-9]+", _ => primes[k++].ToString());
            return ArithmeticExpression.Check(substituted, primes.AsSpan(0, k), out Rational value) == ExpressionVerdict.Evaluated
                ? value
                : null; // division by zero
        }
    }

    [Fact]
    public void Options_are_validated()
    {
        Assert.Throws<EngineException>(() => new CountdownTask(minCount: 1));
        Assert.Throws<EngineException>(() => new CountdownTask(minCount: 4, maxCount: 3));
        Assert.Throws<EngineException>(() => new CountdownTask(maxCount: CountdownTask.MaxSupportedCount + 1));
        Assert.Throws<EngineException>(() => new CountdownTask(minNumber: 0));
        Assert.Throws<EngineException>(() => new CountdownTask(maxNumber: CountdownTask.MaxSupportedNumber + 1));
        Assert.Throws<EngineException>(() => new CountdownTask(minTarget: 0));
        Assert.Throws<EngineException>(() => new CountdownTask(minTarget: 50, maxTarget: 40));
        Assert.Throws<EngineException>(() => new CountdownTask(formatReward: -0.1));
        Assert.Throws<EngineException>(() => new CountdownTask(formatReward: 1));
        Assert.Throws<EngineException>(() => new CountdownTask(formatReward: double.NaN));
    }

    [Fact]
    public void Largest_options_do_not_overflow()
    {
        var task = new CountdownTask(minCount: 6, maxCount: 6, minNumber: 900, maxNumber: 1000,
            minTarget: 1, maxTarget: CountdownTask.MaxSupportedTarget);
        Assert.Equal(6 * 4 + 5 + 8, task.MaxResponseLength);
        for (long i = 0; i < 100; i++)
        {
            TaskExample x = task.Example(DataSplit.Test, i);
            Assert.Equal(new RewardResult(1, true), task.Score(x, x.Reference));
            Assert.True(x.Reference.Length <= task.MaxResponseLength);
        }
    }
}

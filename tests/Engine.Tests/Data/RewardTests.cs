using Engine.Core;

namespace Engine.Tests.Data;

public sealed class RewardTests
{
    private static double Reward(string spec, string answer, string response) =>
        Rewards.Parse(spec).Score(new TaskExample("q", answer), response).Reward;

    [Theory]
    [InlineData("exact", "42", " 42\n", 1)]
    [InlineData("exact", "42", "42.0", 0)]
    [InlineData("numeric", "42", "so the answer is 42.", 1)]
    [InlineData("numeric", "1,000", "It costs 1000", 1)]
    [InlineData("numeric", "42", "42 or 43", 0)]
    [InlineData("math", "Natalia sold 48/2 = 24 clips.\n#### 72", "48 + 24 = 72, so \\boxed{72}", 1)]
    [InlineData("math", "#### 72", "The answer is 72 apples", 1)]
    [InlineData("math", "\\frac{3}{4}", "\\boxed{0.75}", 1)]
    [InlineData("math", "\\boxed{-\\frac{1}{2}}", "\\boxed{-1/2}", 1)]
    [InlineData("math", "3/4", "\\boxed{\\dfrac{3}{4}}", 1)]
    [InlineData("math", "\\boxed{x^2+1}", "so \\boxed{x^{2}+1} hmm \\boxed{x^2 + 1}", 1)]
    [InlineData("math", "#### 72", "\\boxed{\\text{72}} then 5", 1)]
    [InlineData("math", "#### 72", "\\boxed{71}", 0)]
    [InlineData("math", "#### 72", "no number here", 0)]
    [InlineData("contains", "Paris", "It is Paris.", 1)]
    [InlineData("contains", "Paris", "It is London.", 0)]
    [InlineData("regex:^\\d{1,3}$", "", "123", 1)]
    [InlineData("regex:^\\d{1,3}$", "", "1234", 0)]
    [InlineData("math:1,contains:0.25", "7", "\\boxed{7}", 1.25)]
    [InlineData("math:1,contains:0.25", "7", "\\boxed{8}", 0)]
    [InlineData("regex:<think>:0.5,exact", "ok", "<think>x</think>ok", 0.5)]
    [InlineData("exact,length:10", "a", "a", 1)]
    [InlineData("exact,length:10:0.5", "a", "aaaaaaaaaaaaaaa", -0.25)]
    [InlineData("exact,length:10:0.5", "a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", -0.5)]
    public void Verifiers_and_weights(string spec, string answer, string response, double expected) =>
        Assert.Equal(expected, Reward(spec, answer, response), 12);

    [Fact]
    public void Correctness_is_the_first_verifier_and_ignores_the_length_penalty()
    {
        var reward = Rewards.Parse("contains:0.2,exact,length:2");
        Assert.Equal(new RewardResult(1.2 - 1, true), reward.Score(new TaskExample("q", "abcdef"), "abcdef"));
        Assert.False(Rewards.Parse("exact,contains").Score(new TaskExample("q", "b"), "abc").Correct);
    }

    [Theory]
    [InlineData("", "unknown reward ''")]
    [InlineData("maths", "unknown reward 'maths'; the rewards are: exact, numeric, math, regex, contains, length")]
    [InlineData("math:heavy", "the weight in \"math:heavy\" must be a number")]
    [InlineData("regex:(", "invalid regex '('")]
    [InlineData("regex", "regex needs a pattern")]
    [InlineData("length:0", "the length penalty is length:MAX_CHARS[:WEIGHT]")]
    [InlineData("length:100", "name at least one verifier")]
    public void Bad_specs_are_one_line_errors(string spec, string expected)
    {
        var e = Assert.Throws<EngineException>(() => Rewards.Parse(spec));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Scoring_in_parallel_keeps_the_order_and_reports_the_first_failing_example()
    {
        var examples = Enumerable.Range(0, 64).Select(i => new TaskExample($"p{i}", $"{i}") { Source = $"f.jsonl:{i + 1}" }).ToArray();
        var responses = examples.Select(e => e.Reference).ToArray();
        responses[5] = "wrong";
        RewardResult[] results = Rewards.ScoreAll(Rewards.Parse("exact"), examples, responses);
        Assert.Equal(63, results.Count(r => r.Correct));
        Assert.False(results[5].Correct);

        var picky = new ThrowingReward(i => i % 10 == 7);
        var e = Assert.Throws<EngineException>(() => Rewards.ScoreAll(picky, examples, responses));
        Assert.Equal("the reward failed on example f.jsonl:8: InvalidOperationException: no score for p7", e.Message);
        var nan = Assert.Throws<EngineException>(() => Rewards.Score(Rewards.FromFunction((_, _, _) => double.NaN), examples[0], "x"));
        Assert.Equal("the reward returned NaN on example f.jsonl:1", nan.Message);
    }

    private sealed class ThrowingReward(Func<int, bool> fails) : IRewardFunction
    {
        public RewardResult Score(TaskExample example, string response) =>
            fails(int.Parse(example.Prompt[1..], System.Globalization.CultureInfo.InvariantCulture))
                ? throw new InvalidOperationException($"no score for {example.Prompt}")
                : new RewardResult(1, true);
    }
}

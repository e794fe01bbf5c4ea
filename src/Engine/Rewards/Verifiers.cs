namespace Engine.Scoring;

/// <summary>The built-in verifiers: (example, response) to accepted or not.</summary>
internal static class Verifiers
{
    public static Func<TaskExample, string, bool> ByName(string name) => name switch
    {
        "exact" => (e, r) => r.Trim() == e.Reference.Trim(),
        "contains" => (e, r) => e.Reference.Trim() is { Length: > 0 } answer && r.Contains(answer, StringComparison.Ordinal),
        "numeric" => Numeric,
        "math" => Math,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };

    /// <summary>The last number in the response equals the answer's number (the answer's final answer when it is a worked solution).</summary>
    private static bool Numeric(TaskExample example, string response) =>
        AnswerExtraction.LastNumberText(response) is string given
        && AnswerExtraction.TryNumber(given, out double x)
        && AnswerExtraction.TryNumber(AnswerExtraction.ReferenceAnswer(example.Reference), out double y)
        && AnswerExtraction.SameNumber(x, y);

    /// <summary>The final answers agree as numbers when both read as one, else as normalised text.</summary>
    private static bool Math(TaskExample example, string response)
    {
        string given = AnswerExtraction.FinalAnswer(response);
        string expected = AnswerExtraction.ReferenceAnswer(example.Reference);
        if (given.Length == 0 || expected.Length == 0)
        {
            return false;
        }

        if (AnswerExtraction.TryNumber(expected, out double y))
        {
            return AnswerExtraction.TryNumber(given, out double x) && AnswerExtraction.SameNumber(x, y);
        }

        return Compact(given) == Compact(expected);
    }

    private static string Compact(string answer) => AnswerExtraction.Normalize(answer).Replace(" ", "", StringComparison.Ordinal);
}

/// <summary>One weighted term of a reward spec: a verifier (1 or 0) or a length penalty.</summary>
internal sealed record RewardTerm(string Text, double Weight, Func<TaskExample, string, bool>? Verifier, int? MaxChars);

/// <summary>A weighted sum of terms; correct when the first verifier accepts.</summary>
internal sealed class CombinedReward(string spec, IReadOnlyList<RewardTerm> terms) : IRewardFunction
{
    public RewardResult Score(TaskExample example, string response)
    {
        double reward = 0;
        bool? correct = null;
        foreach (RewardTerm term in terms)
        {
            if (term.Verifier is { } verify)
            {
                bool ok = verify(example, response);
                correct ??= ok;
                reward += ok ? term.Weight : 0;
            }
            else
            {
                int max = term.MaxChars!.Value;
                reward -= term.Weight * System.Math.Min(1.0, System.Math.Max(0, response.Length - max) / (double)max);
            }
        }

        return new RewardResult(reward, correct ?? false);
    }

    public override string ToString() => spec;
}

/// <summary>A reward given as a function of (prompt, completion, fields).</summary>
internal sealed class FunctionReward(Func<string, string, IReadOnlyDictionary<string, string>, double> reward, double correctAbove)
    : IRewardFunction
{
    public RewardResult Score(TaskExample example, string response)
    {
        double r = reward(example.Prompt, response, example.Fields);
        return new RewardResult(r, r >= correctAbove);
    }
}

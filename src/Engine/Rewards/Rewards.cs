using System.Globalization;
using System.Text.RegularExpressions;
using Engine.Core;
using Engine.Scoring;

namespace Engine;

/// <summary>
/// Rewards for datasets: built-in verifiers chosen by a spec string, and adapters for your own
/// reward code.
/// </summary>
/// <remarks>
/// A spec is one or more terms separated by commas, each <c>NAME[:WEIGHT]</c> (weight 1 when
/// omitted); the reward is the weighted sum, and a response counts as correct when the first
/// verifier accepts it. The verifiers (each 1 when it accepts, else 0):
/// <list type="bullet">
/// <item><c>exact</c>: the trimmed response equals the trimmed answer.</item>
/// <item><c>numeric</c>: the last number in the response equals the answer's number.</item>
/// <item><c>math</c>: the final answer (the last <c>\boxed{}</c>, else the text after <c>####</c>, else the last
/// number) of the response and of the answer agree: as numbers (fractions, thousands commas,
/// <c>\frac</c>) when both read as one, else as text with spaces and TeX wrappers removed.</item>
/// <item><c>regex:PATTERN[:WEIGHT]</c>: the response matches the pattern (.NET syntax; commas inside
/// brackets or braces are part of the pattern).</item>
/// <item><c>contains</c>: the response contains the trimmed answer.</item>
/// </list>
/// And one penalty: <c>length:MAX_CHARS[:WEIGHT]</c> subtracts WEIGHT times the share by which the response
/// runs past MAX_CHARS (capped at WEIGHT); it never changes correctness.
/// Examples: <c>math</c>, <c>math:1,contains:0.2</c>, <c>exact,length:400:0.5</c>.
/// </remarks>
public static class Rewards
{
    /// <summary>The verifier and penalty names a spec accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["exact", "numeric", "math", "regex", "contains", "length"];

    /// <summary>The reward a spec string describes (see the remarks).</summary>
    /// <exception cref="EngineException">An unknown name, a bad weight or pattern, or no verifier at all.</exception>
    public static IRewardFunction Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var terms = new List<RewardTerm>();
        foreach (string raw in SplitTerms(spec))
        {
            terms.Add(ParseTerm(raw.Trim(), spec));
        }

        if (!terms.Exists(t => t.Verifier is not null))
        {
            throw new EngineException($"reward \"{spec}\": name at least one verifier (the rewards are: {string.Join(", ", Names)})");
        }

        return new CombinedReward(spec.Trim(), terms);
    }

    /// <summary>
    /// A reward from a function of (prompt, completion, the example's fields). The function must be
    /// thread-safe: responses are scored in parallel. A response counts as correct when the reward is
    /// at least <paramref name="correctAbove"/>.
    /// </summary>
    public static IRewardFunction FromFunction(Func<string, string, IReadOnlyDictionary<string, string>, double> reward, double correctAbove = 1)
    {
        ArgumentNullException.ThrowIfNull(reward);
        return new FunctionReward(reward, correctAbove);
    }

    /// <summary>
    /// Scores every response (response i against example i) in parallel, in a result order that
    /// does not depend on the thread timing.
    /// </summary>
    /// <exception cref="EngineException">The reward threw or returned a value that is not finite; the message names the example.</exception>
    public static RewardResult[] ScoreAll(IRewardFunction reward, IReadOnlyList<TaskExample> examples, IReadOnlyList<string> responses)
    {
        ArgumentNullException.ThrowIfNull(reward);
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(responses);
        if (examples.Count != responses.Count)
        {
            throw new ArgumentException($"{examples.Count} examples for {responses.Count} responses");
        }

        var results = new RewardResult[responses.Count];
        var errors = new EngineException?[responses.Count];
        Parallel.For(0, responses.Count, i =>
        {
            try
            {
                results[i] = Score(reward, examples[i], responses[i]);
            }
            catch (EngineException e)
            {
                errors[i] = e;
            }
        });

        // The first failure by index, so the message is the same on every run.
        return Array.Find(errors, e => e is not null) is EngineException error ? throw error : results;
    }

    /// <summary>Scores one response, turning a reward's exception or non-finite value into an <see cref="EngineException"/> naming the example.</summary>
    public static RewardResult Score(IRewardFunction reward, TaskExample example, string response)
    {
        ArgumentNullException.ThrowIfNull(reward);
        ArgumentNullException.ThrowIfNull(example);
        RewardResult result;
        try
        {
            result = reward.Score(example, response);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new EngineException($"the reward failed on example {Describe(example)}: {e.GetType().Name}: {e.Message}");
        }

        return double.IsFinite(result.Reward)
            ? result
            : throw new EngineException($"the reward returned {result.Reward} on example {Describe(example)}");
    }

    /// <summary>Where an example came from, or the start of its prompt.</summary>
    internal static string Describe(TaskExample example) =>
        example.Source.Length > 0 ? example.Source
        : "\"" + (example.Prompt.Length > 40 ? example.Prompt[..40] + "..." : example.Prompt).ReplaceLineEndings(" ") + "\"";

    /// <summary>Splits at commas outside (), [] and {} (so regex quantifiers such as {1,3} stay whole).</summary>
    private static List<string> SplitTerms(string spec)
    {
        var terms = new List<string>();
        int depth = 0, start = 0;
        for (int i = 0; i < spec.Length; i++)
        {
            char c = spec[i];
            if (c == '\\')
            {
                i++;
                continue;
            }

            depth += c is '(' or '[' or '{' ? 1 : c is ')' or ']' or '}' ? -1 : 0;
            if (c == ',' && depth <= 0)
            {
                terms.Add(spec[start..i]);
                start = i + 1;
            }
        }

        terms.Add(spec[start..]);
        return terms;
    }

    private static RewardTerm ParseTerm(string term, string spec)
    {
        int colon = term.IndexOf(':', StringComparison.Ordinal);
        string name = (colon < 0 ? term : term[..colon]).Trim().ToLowerInvariant();
        string? rest = colon < 0 ? null : term[(colon + 1)..];
        switch (name)
        {
            case "exact" or "numeric" or "math" or "contains":
                return new RewardTerm(term, Weight(rest, term, spec), Verifiers.ByName(name), null);
            case "regex":
                if (string.IsNullOrEmpty(rest))
                {
                    throw new EngineException($"reward \"{spec}\": regex needs a pattern (regex:PATTERN[:WEIGHT])");
                }

                (string pattern, double weight) = TrailingWeight(rest, term, spec);
                Regex regex;
                try
                {
                    regex = new Regex(pattern, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
                }
                catch (ArgumentException e)
                {
                    throw new EngineException($"reward \"{spec}\": invalid regex '{pattern}' ({e.Message})");
                }

                return new RewardTerm(term, weight, (_, response) => regex.IsMatch(response), null);
            case "length":
                string[] parts = (rest ?? "").Split(':');
                if (parts.Length is < 1 or > 2 || !int.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int max) || max <= 0)
                {
                    throw new EngineException($"reward \"{spec}\": the length penalty is length:MAX_CHARS[:WEIGHT] with MAX_CHARS a positive integer (got \"{term}\")");
                }

                return new RewardTerm(term, Weight(parts.Length == 2 ? parts[1] : null, term, spec), null, max);
            default:
                throw new EngineException($"reward \"{spec}\": unknown reward '{name}'; the rewards are: {string.Join(", ", Names)}");
        }
    }

    private static (string Pattern, double Weight) TrailingWeight(string rest, string term, string spec)
    {
        int colon = rest.LastIndexOf(':');
        if (colon > 0 && double.TryParse(rest[(colon + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out _))
        {
            return (rest[..colon], Weight(rest[(colon + 1)..], term, spec));
        }

        return (rest, 1);
    }

    private static double Weight(string? text, string term, string spec)
    {
        if (text is null)
        {
            return 1;
        }

        return double.TryParse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double w) && double.IsFinite(w)
            ? w
            : throw new EngineException($"reward \"{spec}\": the weight in \"{term}\" must be a number (got \"{text}\")");
    }
}

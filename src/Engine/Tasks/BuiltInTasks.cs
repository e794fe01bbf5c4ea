using System.Globalization;
using Engine.Core;

namespace Engine;

/// <summary>
/// Creates the built-in tasks by name, with options given as text (as read from a command line or a
/// configuration file).
/// </summary>
/// <remarks>
/// Task names: "addition" (<see cref="AdditionTask"/>), "sorting" (<see cref="SortingTask"/>) and
/// "countdown" (<see cref="CountdownTask"/>); case-insensitive. Option keys are the constructor
/// options, matched ignoring case, '_' and '-' (so "max_digits", "max-digits" and "MaxDigits" are
/// the same key):
/// <list type="bullet">
/// <item>addition: min_digits, max_digits</item>
/// <item>sorting: min_length, max_length</item>
/// <item>countdown: min_count, max_count, count (sets both), min_number, max_number, min_target,
/// max_target, format_reward</item>
/// </list>
/// Numbers are read in the invariant culture. Unknown names or keys and unreadable or out-of-range
/// values raise an <see cref="EngineException"/> that names the problem and the accepted choices.
/// </remarks>
public static class BuiltInTasks
{
    /// <summary>The names <see cref="Create"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["addition", "sorting", "countdown"];

    /// <summary>Creates the built-in task <paramref name="name"/>.</summary>
    /// <param name="name">"addition", "sorting" or "countdown" (case-insensitive).</param>
    /// <param name="seed">Seed of the task's example generator.</param>
    /// <param name="options">Task options by key (see the remarks); null or missing keys keep the defaults.</param>
    /// <exception cref="EngineException">Unknown task or option, or an unreadable or out-of-range value.</exception>
    public static ITask Create(string name, ulong seed = 0, IReadOnlyDictionary<string, string>? options = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        var o = new Options(name.Trim().ToLowerInvariant(), options);
        // Defaults come from default-constructed tasks so that they are written only once.
        ITask task = o.Task switch
        {
            "addition" when new AdditionTask() is var d => new AdditionTask(
                minDigits: o.Int("min_digits", d.MinDigits),
                maxDigits: o.Int("max_digits", d.MaxDigits),
                seed: seed),
            "sorting" when new SortingTask() is var d => new SortingTask(
                minLength: o.Int("min_length", d.MinLength),
                maxLength: o.Int("max_length", d.MaxLength),
                seed: seed),
            "countdown" when new CountdownTask() is var d => new CountdownTask(
                minCount: o.Int("min_count", o.Int("count", d.MinCount)),
                maxCount: o.Int("max_count", o.Int("count", d.MaxCount)),
                minNumber: o.Int("min_number", d.MinNumber),
                maxNumber: o.Int("max_number", d.MaxNumber),
                minTarget: o.Int("min_target", d.MinTarget),
                maxTarget: o.Int("max_target", d.MaxTarget),
                formatReward: o.Double("format_reward", d.FormatReward),
                seed: seed),
            _ => throw new EngineException(
                $"unknown task \"{name}\"; the built-in tasks are: {string.Join(", ", Names)}"),
        };
        o.ThrowOnUnused();
        return task;
    }

    /// <summary>Option lookup that records which keys were read, to reject unknown ones.</summary>
    private sealed class Options
    {
        private readonly Dictionary<string, (string Key, string Value)> _values = new(StringComparer.Ordinal);
        private readonly List<string> _known = [];

        public Options(string task, IReadOnlyDictionary<string, string>? options)
        {
            Task = task;
            foreach ((string key, string value) in options ?? new Dictionary<string, string>())
            {
                ArgumentNullException.ThrowIfNull(value, nameof(options));
                if (!_values.TryAdd(Normalize(key), (key, value)))
                {
                    throw new EngineException($"{task}: option \"{key}\" is given twice (keys ignore case, '_' and '-')");
                }
            }
        }

        public string Task { get; }

        public int Int(string key, int fallback)
        {
            _known.Add(key);
            if (!_values.TryGetValue(Normalize(key), out var kv))
            {
                return fallback;
            }

            return int.TryParse(kv.Value.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v)
                ? v
                : throw new EngineException($"{Task}: option \"{kv.Key}\" must be an integer (got \"{kv.Value}\")");
        }

        public double Double(string key, double fallback)
        {
            _known.Add(key);
            if (!_values.TryGetValue(Normalize(key), out var kv))
            {
                return fallback;
            }

            return double.TryParse(kv.Value.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v)
                ? v
                : throw new EngineException($"{Task}: option \"{kv.Key}\" must be a number (got \"{kv.Value}\")");
        }

        public void ThrowOnUnused()
        {
            foreach ((string normalized, (string key, _)) in _values)
            {
                if (!_known.Exists(k => Normalize(k) == normalized))
                {
                    throw new EngineException(
                        $"{Task}: unknown option \"{key}\"; the options are: {string.Join(", ", _known.Distinct())}");
                }
            }
        }

        private static string Normalize(string key) =>
            key.Replace("_", "", StringComparison.Ordinal).Replace("-", "", StringComparison.Ordinal).Trim().ToLowerInvariant();
    }
}

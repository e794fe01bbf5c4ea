using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Core;

namespace Engine.Config;

/// <summary>
/// Binds option records (SftOptions, RlOptions, ...) to JSON objects and command-line values:
/// snake_case names in JSON, kebab-case flags on the command line, every public settable property a
/// setting. Unknown names, wrong types and values out of range get one clear error each.
/// </summary>
internal static class OptionsBinder
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        // Enum settings are their kebab-case names in files and on the command line: "token-mean", "k3".
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower, allowIntegerValues: false) },
    };

    /// <summary>The settings of an options type: JSON name, flag name and property.</summary>
    public static IReadOnlyList<(string Name, string Flag, PropertyInfo Property)> Settings(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && IsSupported(p.PropertyType))
            .Select(p => (JsonNamingPolicy.SnakeCaseLower.ConvertName(p.Name), "--" + JsonNamingPolicy.KebabCaseLower.ConvertName(p.Name), p))
            .ToList();

    /// <summary>The name of an enum setting's value as config files and flags spell it: "token-mean", "k3".</summary>
    public static string Name(Enum value) => JsonNamingPolicy.KebabCaseLower.ConvertName(value.ToString());

    /// <summary>
    /// The value of enum <typeparamref name="T"/> named <paramref name="text"/> (its kebab-case name), for a flag outside the
    /// option records; an <see cref="EngineException"/> naming <paramref name="flag"/> and the choices otherwise.
    /// </summary>
    public static T ParseEnum<T>(string text, string flag) where T : struct, Enum =>
        Enum.GetValues<T>().Where(v => Name(v) == text).Select(v => (T?)v).FirstOrDefault()
        ?? throw new EngineException($"{flag} must be {Choices(typeof(T))}, got '{text}'");

    /// <summary>The options as a JSON object with every setting.</summary>
    public static JsonObject ToJson<T>(T options) => JsonSerializer.SerializeToNode(options, Json)!.AsObject();

    /// <summary>
    /// <paramref name="defaults"/> with the settings of <paramref name="overrides"/> applied. Throws an
    /// <see cref="EngineException"/> naming <paramref name="source"/> and the setting for an unknown
    /// name (with the closest known one) or a value of the wrong type.
    /// </summary>
    public static T Apply<T>(T defaults, JsonObject? overrides, string source)
    {
        if (overrides is null || overrides.Count == 0)
        {
            return defaults;
        }

        var settings = Settings(typeof(T)).ToDictionary(s => s.Name, s => s.Property, StringComparer.Ordinal);
        JsonObject merged = ToJson(defaults);
        foreach (var (key, value) in overrides)
        {
            if (!settings.TryGetValue(key, out PropertyInfo? property))
            {
                string? near = Closest(key, settings.Keys);
                throw new EngineException($"{source}: unknown setting '{key}'{(near is null ? "" : $" (did you mean '{near}'?)")}");
            }

            CheckType(value, property.PropertyType, key, source);
            merged[key] = value?.DeepClone();
        }

        try
        {
            T result = merged.Deserialize<T>(Json)!;
            // Settings kept out of the flat JSON (nested sections such as rl's "kd") survive the merge.
            foreach (PropertyInfo p in typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                if (p.CanWrite && p.IsDefined(typeof(System.Text.Json.Serialization.JsonIgnoreAttribute)))
                {
                    p.SetValue(result, p.GetValue(defaults));
                }
            }

            return result;
        }
        catch (JsonException e)
        {
            throw new EngineException($"{source}: {e.Message}");
        }
    }

    /// <summary>Parses a command-line value into the JSON value of a setting of <paramref name="type"/>.</summary>
    public static JsonNode? ParseValue(string text, Type type, string flag)
    {
        Type t = Nullable.GetUnderlyingType(type) ?? type;
        var inv = CultureInfo.InvariantCulture;
        if (t == typeof(string) || t.IsEnum)
        {
            return JsonValue.Create(text);
        }

        if (t == typeof(bool))
        {
            return bool.TryParse(text, out bool b) ? JsonValue.Create(b) : throw new EngineException($"{flag}: expected true or false, got '{text}'");
        }

        if (t == typeof(int))
        {
            return int.TryParse(text, NumberStyles.Integer, inv, out int i) ? JsonValue.Create(i) : throw new EngineException($"{flag}: expected an integer, got '{text}'");
        }

        if (t == typeof(long))
        {
            return long.TryParse(text, NumberStyles.Integer, inv, out long l) ? JsonValue.Create(l) : throw new EngineException($"{flag}: expected an integer, got '{text}'");
        }

        if (t == typeof(ulong))
        {
            return ulong.TryParse(text, NumberStyles.Integer, inv, out ulong u) ? JsonValue.Create(u) : throw new EngineException($"{flag}: expected a non-negative integer, got '{text}'");
        }

        if (double.TryParse(text, NumberStyles.Float, inv, out double d) && double.IsFinite(d))
        {
            return t == typeof(float) ? JsonValue.Create((float)d) : JsonValue.Create(d);
        }

        throw new EngineException($"{flag}: expected a number, got '{text}'");
    }

    private static bool IsSupported(Type type)
    {
        Type t = Nullable.GetUnderlyingType(type) ?? type;
        return t.IsEnum || t == typeof(string) || t == typeof(bool) || t == typeof(int) || t == typeof(long) || t == typeof(ulong) || t == typeof(float) ||
               t == typeof(double);
    }

    private static void CheckType(JsonNode? value, Type type, string key, string source)
    {
        Type t = Nullable.GetUnderlyingType(type) ?? type;
        JsonValueKind kind = value?.GetValueKind() ?? JsonValueKind.Null;
        bool ok = t == typeof(string) ? kind == JsonValueKind.String
            : t == typeof(bool) ? kind is JsonValueKind.True or JsonValueKind.False
            : kind == JsonValueKind.Number && (t == typeof(float) || t == typeof(double) || IsInteger(value!, t));
        if (kind == JsonValueKind.Null && Nullable.GetUnderlyingType(type) is not null)
        {
            ok = true;
        }

        if (t.IsEnum)
        {
            if (kind != JsonValueKind.String || !Enum.GetNames(t).Select(JsonNamingPolicy.KebabCaseLower.ConvertName).Contains(value!.GetValue<string>(), StringComparer.Ordinal))
            {
                throw new EngineException($"{source}: setting '{key}' must be {Choices(t)}, got {value?.ToJsonString() ?? "null"}");
            }

            return;
        }

        if (!ok)
        {
            string expected = t == typeof(string) ? "a string" : t == typeof(bool) ? "true or false"
                : t == typeof(float) || t == typeof(double) ? "a number" : "an integer";
            throw new EngineException($"{source}: setting '{key}' must be {expected}, got {value?.ToJsonString() ?? "null"}");
        }
    }

    /// <summary>The kebab-case names of enum <paramref name="t"/>'s values as a list: "k1, k2 or k3".</summary>
    private static string Choices(Type t)
    {
        string[] names = [.. Enum.GetNames(t).Select(JsonNamingPolicy.KebabCaseLower.ConvertName)];
        return names.Length == 1 ? names[0] : $"{string.Join(", ", names[..^1])} or {names[^1]}";
    }

    private static bool IsInteger(JsonNode value, Type t)
    {
        double d = double.Parse(value.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture);
        return d == Math.Floor(d) && (t != typeof(ulong) || d >= 0) && (t != typeof(int) || d is >= int.MinValue and <= int.MaxValue);
    }

    private static string? Closest(string key, IEnumerable<string> names)
    {
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (string name in names)
        {
            int d = Distance(key, name);
            if (d < bestDistance)
            {
                bestDistance = d;
                best = name;
            }
        }

        return bestDistance <= Math.Max(2, key.Length / 3) ? best : null;
    }

    private static int Distance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int previous = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int current = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), previous + (a[i - 1] == b[j - 1] ? 0 : 1));
                previous = current;
            }
        }

        return row[b.Length];
    }
}

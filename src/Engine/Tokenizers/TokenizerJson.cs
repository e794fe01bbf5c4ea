using System.Text.Json;
using Engine.Core;

namespace Engine.Tokenizers;

/// <summary>Typed reads from a tokenizer file's JSON, with errors that name the file and the key path.</summary>
internal readonly struct TokenizerJson(string source)
{
    /// <summary>The file (or "JSON text") the errors name.</summary>
    public string Source { get; } = source;

    /// <summary>Parses <paramref name="json"/>; malformed JSON becomes an <see cref="EngineException"/>.</summary>
    public JsonDocument Parse(string json)
    {
        try
        {
            // Repeated keys are allowed here: the readers check the ones that matter (a vocabulary token twice) with a precise message.
            return JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw Error($"malformed JSON: {e.Message}");
        }
    }

    /// <summary>An error about this file.</summary>
    public EngineException Error(string message) => new($"{Source}: {message}");

    /// <summary>The object at <paramref name="path"/> (throws when it is not an object).</summary>
    public JsonElement Object(JsonElement e, string path) =>
        e.ValueKind == JsonValueKind.Object ? e : throw Error($"{path} must be a JSON object, not {Describe(e)}");

    /// <summary>The property, or null when absent or JSON null.</summary>
    public static JsonElement? Optional(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out JsonElement v) && v.ValueKind != JsonValueKind.Null ? v : null;

    /// <summary>A required property.</summary>
    public JsonElement Required(JsonElement obj, string name, string path) =>
        Optional(obj, name) ?? throw Error($"{Join(path, name)} is missing");

    /// <summary>A string value.</summary>
    public string String(JsonElement e, string path) =>
        e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Error($"{path} must be a string, not {Describe(e)}");

    /// <summary>An optional string property (null when absent).</summary>
    public string? OptionalString(JsonElement obj, string name, string path) =>
        Optional(obj, name) is { } v ? String(v, Join(path, name)) : null;

    /// <summary>An optional boolean property.</summary>
    public bool Bool(JsonElement obj, string name, string path, bool absent)
    {
        if (Optional(obj, name) is not { } v)
        {
            return absent;
        }
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error($"{Join(path, name)} must be true or false, not {Describe(v)}"),
        };
    }

    /// <summary>A non-negative 32-bit integer.</summary>
    public int Id(JsonElement e, string path) =>
        e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v) && v >= 0
            ? v
            : throw Error($"{path} must be a non-negative 32-bit integer, not {Describe(e)}");

    /// <summary>An array value.</summary>
    public JsonElement Array(JsonElement e, string path) =>
        e.ValueKind == JsonValueKind.Array ? e : throw Error($"{path} must be a JSON array, not {Describe(e)}");

    /// <summary>"a.b" path text.</summary>
    public static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";

    /// <summary>Short description of a value for error messages.</summary>
    public static string Describe(JsonElement e)
    {
        string raw = e.GetRawText();
        return e.ValueKind.ToString().ToLowerInvariant() + " " + (raw.Length > 40 ? raw[..40] + "..." : raw);
    }

    /// <summary>Reads a file's text; a missing or unreadable file becomes an <see cref="EngineException"/>.</summary>
    public static string ReadFile(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new EngineException($"cannot read tokenizer file {path}: {e.Message}", e);
        }
    }
}

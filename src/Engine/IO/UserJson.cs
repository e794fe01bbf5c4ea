using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Core;

namespace Engine.IO;

/// <summary>
/// How JSON from a user's file is read: a repeated key is an error (readers disagree on which value
/// wins, and JsonNode throws a plain ArgumentException on first access), the nesting depth is bounded,
/// and every failure is an <see cref="EngineException"/> naming the file.
/// </summary>
internal static class UserJson
{
    /// <summary>The reader options: no duplicate keys, at most 64 levels.</summary>
    public static readonly JsonDocumentOptions Options = new() { MaxDepth = 64, AllowDuplicateProperties = false };

    /// <summary>Parses <paramref name="text"/> as a JSON object; <paramref name="source"/> names it in errors.</summary>
    public static JsonObject ParseObject(string text, string source)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(text, documentOptions: Options);
        }
        catch (JsonException e)
        {
            throw new EngineException($"{source}: invalid JSON ({e.Message})");
        }

        return node as JsonObject ?? throw new EngineException($"{source}: not a JSON object");
    }

    /// <summary>
    /// Parses UTF-8 bytes; invalid UTF-8 is an error here (JsonDocument defers it to the first
    /// string read, which throws InvalidOperationException).
    /// </summary>
    public static JsonDocument ParseDocument(byte[] utf8, string source)
    {
        if (!System.Text.Unicode.Utf8.IsValid(utf8))
        {
            throw new EngineException($"{source}: not valid UTF-8");
        }

        try
        {
            return JsonDocument.Parse(utf8, Options);
        }
        catch (JsonException e)
        {
            throw new EngineException($"{source}: invalid JSON ({e.Message})");
        }
    }
}

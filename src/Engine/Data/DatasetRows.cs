using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Core;

namespace Engine.Data;

/// <summary>Turns file rows into examples by the field mapping of <see cref="DatasetOptions"/>.</summary>
internal static class DatasetRows
{
    /// <summary>The chat roles a messages list may hold.</summary>
    public static readonly string[] Roles = ["system", "user", "assistant"];

    /// <summary>
    /// The examples of <paramref name="path"/>, in file order, and how many malformed rows were
    /// skipped (with <see cref="MalformedRowPolicy.Skip"/>; otherwise the first one throws).
    /// </summary>
    public static (List<TaskExample> Examples, int Skipped) Load(string path, DatasetOptions options)
    {
        List<FileRow> rows = DatasetFile.Read(path);
        if (rows.Count == 0)
        {
            throw new EngineException($"{path}: the dataset file holds no rows");
        }

        var examples = new List<TaskExample>(rows.Count);
        int skipped = 0;
        string? firstError = null;
        foreach (FileRow row in rows)
        {
            string? error = row.Error;
            TaskExample? example = null;
            if (row.Row is JsonObject o)
            {
                (example, error) = ToExample(o, row.Location, options);
            }

            if (example is not null)
            {
                examples.Add(example);
                continue;
            }

            string message = $"{row.Location}: {error}";
            if (options.OnMalformed == MalformedRowPolicy.Fail)
            {
                throw new EngineException(message + " (to leave such rows out, set the malformed-row policy to skip)");
            }

            firstError ??= message;
            skipped++;
        }

        if (examples.Count == 0)
        {
            throw new EngineException($"{path}: no usable rows ({skipped} skipped; the first: {firstError})");
        }

        return (examples, skipped);
    }

    /// <summary>One row as an example, or why it is malformed.</summary>
    private static (TaskExample? Example, string? Error) ToExample(JsonObject row, string location, DatasetOptions o)
    {
        string prompt;
        List<ChatTurn>? messages = null;
        string? reference = null;
        if (row[o.PromptField] is { } promptNode)
        {
            if (Text(promptNode) is not string text)
            {
                return (null, $"field '{o.PromptField}' must be text, got {Kind(promptNode)}");
            }

            prompt = text;
        }
        else if (row[o.MessagesField] is { } messagesNode)
        {
            (messages, string? error) = Messages(messagesNode, o.MessagesField);
            if (messages is null)
            {
                return (null, error);
            }

            // A chat that ends with the assistant's turn carries its own reference answer.
            if (messages[^1].Role == "assistant")
            {
                reference = messages[^1].Content;
                messages.RemoveAt(messages.Count - 1);
            }

            if (messages.Count == 0 || messages.FindLastIndex(m => m.Role == "user") < 0)
            {
                return (null, $"field '{o.MessagesField}' has no user message before the answer");
            }

            prompt = messages.Last(m => m.Role == "user").Content;
        }
        else
        {
            return (null, $"missing field '{o.PromptField}' (or '{o.MessagesField}'); the row's fields are: {FieldList(row)}");
        }

        if (o.AnswerField.Length > 0 && row[o.AnswerField] is { } answerNode)
        {
            reference = Text(answerNode) ?? Number(answerNode);
            if (reference is null)
            {
                return (null, $"field '{o.AnswerField}' must be text or a number, got {Kind(answerNode)}");
            }
        }
        else if (o.AnswerField.Length > 0 && reference is null)
        {
            return (null, $"missing field '{o.AnswerField}'; the row's fields are: {FieldList(row)}");
        }

        return (new TaskExample(prompt, reference ?? "") { Messages = messages, Fields = Fields(row), Source = location }, null);
    }

    private static (List<ChatTurn>? Messages, string? Error) Messages(JsonNode node, string field)
    {
        if (node is not JsonArray array)
        {
            return (null, $"field '{field}' must be a list of {{\"role\", \"content\"}} objects, got {Kind(node)}");
        }

        if (array.Count == 0)
        {
            return (null, $"field '{field}' is an empty list");
        }

        var messages = new List<ChatTurn>(array.Count);
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonObject m || Text(m["role"]) is not string role || Text(m["content"]) is not string content)
            {
                return (null, $"{field}[{i}] must be an object with text \"role\" and \"content\"");
            }

            if (!Roles.Contains(role))
            {
                return (null, $"{field}[{i}] has role '{role}'; the roles are: {string.Join(", ", Roles)}");
            }

            messages.Add(new ChatTurn(role, content));
        }

        return (messages, null);
    }

    /// <summary>Every field as text: strings as they are, numbers and booleans in the invariant culture, lists and objects as JSON.</summary>
    private static Dictionary<string, string> Fields(JsonObject row)
    {
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach ((string key, JsonNode? value) in row)
        {
            fields[key] = value is null ? "" : Text(value) ?? Number(value) ?? value.ToJsonString();
        }

        return fields;
    }

    private static string? Text(JsonNode? node) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;

    private static string? Number(JsonNode node) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.Number
            ? (v.TryGetValue(out long l) ? l.ToString(CultureInfo.InvariantCulture) : v.GetValue<double>().ToString("R", CultureInfo.InvariantCulture))
            : null;

    private static string Kind(JsonNode node) => node.GetValueKind() switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "a list",
        JsonValueKind.String => "text",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "true/false",
        _ => "null",
    };

    private static string FieldList(JsonObject row) => row.Count == 0 ? "(none)" : string.Join(", ", row.Select(kv => kv.Key));
}

using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Core;
using Parquet;
using Parquet.Serialization;

namespace Engine.Data;

/// <summary>One row of a dataset file as JSON, where it came from, or why it could not be read.</summary>
/// <param name="Row">The row's fields; null when the row is not readable.</param>
/// <param name="Location">"file:line" for JSON Lines, "file: row group G, row R" for Parquet (both counted from 1).</param>
/// <param name="Error">Why the row could not be read (null when <paramref name="Row"/> is set).</param>
internal readonly record struct FileRow(JsonObject? Row, string Location, string? Error);

/// <summary>
/// Reads the rows of a dataset file: JSON Lines (one JSON object a line, blank lines ignored) or
/// Parquet (every row group; lists and structs become JSON arrays and objects). The format is
/// chosen by the extension.
/// </summary>
internal static class DatasetFile
{
    /// <summary>The extensions <see cref="Read"/> accepts.</summary>
    public static readonly string[] Extensions = [".jsonl", ".parquet"];

    /// <summary>True when <paramref name="path"/> has a dataset file extension.</summary>
    public static bool IsDatasetPath(string path) =>
        Extensions.Contains(Path.GetExtension(path), StringComparer.OrdinalIgnoreCase);

    /// <summary>Every row of <paramref name="path"/>, in file order.</summary>
    public static List<FileRow> Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new EngineException($"{path}: dataset file not found");
        }

        string ext = Path.GetExtension(path).ToLowerInvariant();
        return ext switch
        {
            ".jsonl" => ReadJsonLines(path),
            ".parquet" => ReadParquetAsync(path).GetAwaiter().GetResult(),
            _ => throw new EngineException($"{path}: unknown dataset format '{ext}' (the formats are: {string.Join(", ", Extensions)})"),
        };
    }

    private static List<FileRow> ReadJsonLines(string path)
    {
        var rows = new List<FileRow>();
        string name = Path.GetFileName(path);
        int lineNumber = 0;
        using var reader = new StreamReader(path, new UTF8Encoding(false, throwOnInvalidBytes: true), detectEncodingFromByteOrderMarks: true);
        while (true)
        {
            string? line;
            lineNumber++;
            try
            {
                line = reader.ReadLine();
            }
            catch (DecoderFallbackException)
            {
                throw new EngineException($"{name}:{lineNumber}: not UTF-8 text");
            }

            if (line is null)
            {
                break;
            }

            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            string location = $"{name}:{lineNumber}";
            try
            {
                rows.Add(JsonNode.Parse(line) is JsonObject o
                    ? new FileRow(o, location, null)
                    : new FileRow(null, location, "not a JSON object"));
            }
            catch (JsonException e)
            {
                rows.Add(new FileRow(null, location, $"not valid JSON ({FirstSentence(e.Message)})"));
            }
        }

        return rows;
    }

    private static async Task<List<FileRow>> ReadParquetAsync(string path)
    {
        string name = Path.GetFileName(path);
        var rows = new List<FileRow>();
        try
        {
            await using FileStream stream = File.OpenRead(path);
            int groups;
            await using (ParquetReader reader = await ParquetReader.CreateAsync(stream, leaveStreamOpen: true).ConfigureAwait(false))
            {
                groups = reader.RowGroupCount;
            }

            for (int g = 0; g < groups; g++)
            {
                stream.Position = 0;
                var result = await ParquetSerializer.DeserializeUntypedAsync(stream, rowGroupIndex: g).ConfigureAwait(false);
                int r = 0;
                foreach (IDictionary<string, object> row in result.Data)
                {
                    r++;
                    rows.Add(new FileRow(ToJson(row), $"{name}: row group {g + 1}, row {r}", null));
                }
            }
        }
        catch (EngineException)
        {
            throw;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or InvalidOperationException
                                      or ArgumentException or IndexOutOfRangeException or FormatException)
        {
            throw new EngineException($"{name}: not a readable Parquet file ({FirstSentence(e.Message)})");
        }

        return rows;
    }

    /// <summary>A Parquet value (scalar, list or struct as the untyped reader gives them) as JSON.</summary>
    private static JsonNode? ToJson(object? value) => value switch
    {
        null => null,
        string s => JsonValue.Create(s),
        bool b => JsonValue.Create(b),
        byte[] bytes => JsonValue.Create(Encoding.UTF8.GetString(bytes)),
        ReadOnlyMemory<char> chars => JsonValue.Create(chars.ToString()),
        ReadOnlyMemory<byte> bytes => JsonValue.Create(Encoding.UTF8.GetString(bytes.Span)),
        sbyte or byte or short or ushort or int or uint or long or ulong => JsonValue.Create(Convert.ToInt64(value, CultureInfo.InvariantCulture)),
        float or double or decimal or Half => JsonValue.Create(Convert.ToDouble(value, CultureInfo.InvariantCulture)),
        DateTime or DateTimeOffset or DateOnly or TimeOnly or TimeSpan or Guid =>
            JsonValue.Create(Convert.ToString(value, CultureInfo.InvariantCulture)),
        IDictionary<string, object> dict => ToJson(dict),
        IDictionary dict => new JsonObject(dict.Keys.Cast<object>().Select(k =>
            KeyValuePair.Create(Convert.ToString(k, CultureInfo.InvariantCulture) ?? "", ToJson(dict[k])))),
        IEnumerable list => new JsonArray(list.Cast<object?>().Select(ToJson).ToArray()),
        _ => JsonValue.Create(Convert.ToString(value, CultureInfo.InvariantCulture)),
    };

    private static JsonObject ToJson(IDictionary<string, object> row) =>
        new(row.Select(kv => KeyValuePair.Create(kv.Key, ToJson(kv.Value))));

    private static string FirstSentence(string message)
    {
        int end = message.IndexOfAny(['\r', '\n']);
        return end < 0 ? message : message[..end];
    }
}

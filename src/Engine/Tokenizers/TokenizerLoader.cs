using System.Text.Json;

namespace Engine.Tokenizers;

/// <summary>Loads whichever kind of tokenizer a file holds.</summary>
internal static class TokenizerLoader
{
    /// <summary>The file name a model directory keeps its tokenizer under.</summary>
    public const string FileName = "tokenizer.json";

    /// <summary>
    /// Loads <paramref name="path"/>: a tokenizer file, or a directory holding tokenizer.json.
    /// A JSON object with "type": "char" is a <see cref="CharTokenizer"/>; one with a "model"
    /// is a Hugging Face tokenizer.json (<see cref="BpeTokenizer.FromFile"/>, which also reads a
    /// tokenizer_config.json beside it).
    /// </summary>
    public static ITokenizer Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
        {
            path = Path.Combine(path, FileName);
        }
        string json = TokenizerJson.ReadFile(path);
        var j = new TokenizerJson(path);
        using (JsonDocument doc = j.Parse(json))
        {
            JsonElement root = j.Object(doc.RootElement, "the root");
            if (TokenizerJson.Optional(root, "type") is { ValueKind: JsonValueKind.String } type && type.GetString() == CharTokenizer.JsonType)
            {
                return CharTokenizer.FromJson(j, root);
            }
            if (TokenizerJson.Optional(root, "model") is null)
            {
                throw j.Error("not a recognised tokenizer file: neither a Hugging Face tokenizer.json (no \"model\") "
                    + "nor a character tokenizer (\"type\": \"char\")");
            }
        }
        return BpeTokenizer.FromFileText(path, json);
    }
}

using System.Text.Json;
using Engine.Core;
using Engine.IO;
using Engine.Model;

namespace Engine.Tools;

/// <summary>
/// The parity harness behind <c>engine forward-backward</c>: next-token cross-entropy of a HF
/// checkpoint on given tokens, written as a safetensors file with <c>logits</c> [B,T,V],
/// <c>loss</c> [1] and <c>grad.NAME</c> for every parameter tensor of the model file (same name,
/// shape and layout as stored).
/// </summary>
internal static class ForwardBackward
{
    public static int Run(string modelDir, string tokensPath, string outputPath, string? device)
    {
        int[][] rows = ReadTokens(tokensPath);
        using Accelerator acc = Backends.Registry.Open(device);
        LoadedModel loaded = HfCheckpoint.Load(acc, modelDir);
        using Transformer model = loaded.Model;
        var result = Compute(model, rows);
        var writer = new SafeTensorsWriter(new Dictionary<string, string> { ["producer"] = "engine forward-backward" });
        writer.Add("logits", [rows.Length, rows[0].Length, model.Config.VocabSize], result.Logits);
        writer.Add("loss", [1], new[] { result.Loss });
        foreach (var (name, shape, data) in HfCheckpoint.Export(model, model.Grads!))
        {
            writer.Add("grad." + loaded.Prefix + name, shape, data);
        }

        writer.Write(outputPath);
        return 0;
    }

    /// <summary>Loss, logits [B*T*V] and gradients (left in <c>model.Grads</c>) for B rows of T tokens.</summary>
    public static (float Loss, float[] Logits) Compute(Transformer model, int[][] rows)
    {
        int b = rows.Length, t = rows[0].Length;
        var flat = new int[b * t];
        for (int i = 0; i < b; i++)
        {
            rows[i].CopyTo(flat, i * t);
        }

        model.SetTokens(flat, b, t);
        model.ZeroGradients();
        float loss = model.ForwardBackwardNextToken();
        using DeviceBuffer logits = model.Acc.Allocate((long)b * t * model.Config.VocabSize);
        model.Logits(logits.All);
        return (loss, model.Acc.ToArray(logits.All));
    }

    /// <summary>Reads <c>{"input_ids": [[...], ...]}</c>: at least one row, all of the same length (at least 2).</summary>
    public static int[][] ReadTokens(string path)
    {
        if (!File.Exists(path))
        {
            throw new EngineException($"{path}: tokens file not found");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new EngineException($"{path}: invalid JSON ({e.Message})");
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("input_ids", out JsonElement ids)
                                                                  || ids.ValueKind != JsonValueKind.Array)
            {
                throw new EngineException($"{path}: expected an object {{\"input_ids\": [[...], ...]}}");
            }

            var rows = new List<int[]>();
            foreach (JsonElement row in ids.EnumerateArray())
            {
                if (row.ValueKind != JsonValueKind.Array)
                {
                    throw new EngineException($"{path}: input_ids must be a list of rows (lists of token ids)");
                }

                var values = new List<int>();
                foreach (JsonElement v in row.EnumerateArray())
                {
                    if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int id))
                    {
                        throw new EngineException($"{path}: row {rows.Count} holds '{v}', not an integer token id");
                    }

                    values.Add(id);
                }

                rows.Add(values.ToArray());
            }

            if (rows.Count == 0 || rows[0].Length < 2)
            {
                throw new EngineException($"{path}: need at least one row of at least 2 tokens");
            }

            if (rows.Any(r => r.Length != rows[0].Length))
            {
                throw new EngineException($"{path}: all rows must have the same length (got {string.Join(", ", rows.Select(r => r.Length).Distinct())})");
            }

            return rows.ToArray();
        }
    }
}

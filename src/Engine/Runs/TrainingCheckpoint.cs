using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Core;
using Engine.IO;
using Engine.Model;
using Engine.Training;

namespace Engine.Runs;

/// <summary>
/// A resumable training checkpoint: <c>model/</c> (a Hugging Face checkpoint with its tokenizer),
/// <c>optimizer.safetensors</c> (AdamW moments in the engine's flat layout), optionally
/// <c>reference.safetensors</c> (the frozen KL reference) and <c>state.json</c> (phase, step,
/// optimizer step, and whatever the trainer needs). The directory is written under a temporary
/// name and renamed into place, so a checkpoint is either complete or absent.
/// </summary>
internal static class TrainingCheckpoint
{
    public const string StateFile = "state.json";

    /// <summary>Writes a checkpoint to <paramref name="directory"/> (replacing one that exists).</summary>
    public static void Save(string directory, Transformer model, AdamWOptimizer optimizer, JsonObject state,
        Action<string>? saveTokenizer = null, Transformer? reference = null)
    {
        string full = Path.GetFullPath(directory);
        string temp = full + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            string modelDir = Path.Combine(temp, "model");
            HfCheckpoint.Save(model, modelDir);
            saveTokenizer?.Invoke(Path.Combine(modelDir, "tokenizer.json"));
            var moments = new SafeTensorsWriter(new Dictionary<string, string> { ["step"] = optimizer.StepCount.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            moments.Add("m", [(int)model.Layout.TotalLength], model.Acc.ToArray(optimizer.M.All));
            moments.Add("v", [(int)model.Layout.TotalLength], model.Acc.ToArray(optimizer.V.All));
            moments.Write(Path.Combine(temp, "optimizer.safetensors"));
            if (reference is not null)
            {
                var r = new SafeTensorsWriter();
                r.Add("params", [(int)reference.Layout.TotalLength], reference.Acc.ToArray(reference.Params.All));
                r.Write(Path.Combine(temp, "reference.safetensors"));
            }

            state["optimizer_step"] = optimizer.StepCount;
            AtomicFile.WriteAllText(Path.Combine(temp, StateFile), state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            if (Directory.Exists(full))
            {
                Directory.Delete(full, recursive: true);
            }

            Directory.Move(temp, full);
        }
        catch
        {
            if (Directory.Exists(temp))
            {
                Directory.Delete(temp, recursive: true);
            }

            throw;
        }
    }

    /// <summary>Restores parameters, optimizer moments and step (and the reference) from a checkpoint; returns its state.</summary>
    public static JsonObject Load(string directory, Transformer model, AdamWOptimizer optimizer, Transformer? reference = null)
    {
        string statePath = Path.Combine(directory, StateFile);
        if (!File.Exists(statePath))
        {
            throw new EngineException($"{directory}: not a checkpoint (no {StateFile})");
        }

        JsonObject state = JsonNode.Parse(File.ReadAllText(statePath))!.AsObject();
        HfCheckpoint.LoadInto(model, Path.Combine(directory, "model"));
        using (var moments = SafeTensorsFile.Open(Path.Combine(directory, "optimizer.safetensors")))
        {
            ReadFlat(moments, "m", optimizer.M, model);
            ReadFlat(moments, "v", optimizer.V, model);
        }

        optimizer.StepCount = (int)HtmlReport.Number(state["optimizer_step"])!.Value;
        if (reference is not null)
        {
            using var r = SafeTensorsFile.Open(Path.Combine(directory, "reference.safetensors"));
            ReadFlat(r, "params", reference.Params, reference);
        }

        return state;
    }

    /// <summary>The latest complete checkpoint under <paramref name="checkpoints"/> (SFT before RL, then by step), or null.</summary>
    public static string? Latest(string checkpoints)
    {
        if (!Directory.Exists(checkpoints))
        {
            return null;
        }

        return Directory.GetDirectories(checkpoints)
            .Where(d => !d.Contains(".tmp-", StringComparison.Ordinal) && File.Exists(Path.Combine(d, StateFile)))
            .Select(d => (Dir: d, State: JsonNode.Parse(File.ReadAllText(Path.Combine(d, StateFile)))!.AsObject()))
            .OrderBy(c => (string?)c.State["phase"] == "sft" ? 0 : 1)
            .ThenBy(c => HtmlReport.Number(c.State["step"]) ?? 0)
            .Select(c => c.Dir)
            .LastOrDefault();
    }

    private static void ReadFlat(SafeTensorsFile file, string name, DeviceBuffer target, Transformer model)
    {
        SafeTensorInfo info = file.GetInfo(name);
        if (info.ElementCount != model.Layout.TotalLength)
        {
            throw new EngineException($"{file.FilePath}: '{name}' holds {info.ElementCount} values, the model needs {model.Layout.TotalLength}");
        }

        model.Acc.Upload(target.All, file.ReadAsFloat32(name));
    }
}

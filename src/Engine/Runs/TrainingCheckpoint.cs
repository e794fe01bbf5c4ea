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

    /// <summary>Elements per tensor of a flat buffer in the checkpoint files (1 GiB of F32), so no shape or length exceeds int range.</summary>
    internal const long FlatChunkElements = 1L << 28;

    /// <summary>
    /// Writes a checkpoint to <paramref name="directory"/> (replacing one that exists). The model is
    /// saved with the keys of <paramref name="originalConfig"/> kept and its weights as
    /// <paramref name="dtype"/>; when that is not F32 the exact parameters are also kept in
    /// <c>params.safetensors</c>, so a resumed run continues bit-identically.
    /// </summary>
    public static void Save(string directory, Transformer model, AdamWOptimizer optimizer, JsonObject state,
        Action<string>? saveTokenizer = null, Transformer? reference = null, JsonObject? originalConfig = null,
        SafeTensorsDType dtype = SafeTensorsDType.F32)
    {
        string full = Path.GetFullPath(directory);
        string temp = full + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            string modelDir = Path.Combine(temp, "model");
            HfCheckpoint.Save(model, modelDir, originalConfig, dtype: dtype);
            saveTokenizer?.Invoke(Path.Combine(modelDir, "tokenizer.json"));
            var moments = new SafeTensorsWriter(new Dictionary<string, string> { ["step"] = optimizer.StepCount.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            AddFlat(moments, "m", optimizer.M, model);
            AddFlat(moments, "v", optimizer.V, model);
            moments.Write(Path.Combine(temp, "optimizer.safetensors"));
            if (dtype != SafeTensorsDType.F32)
            {
                var exact = new SafeTensorsWriter();
                AddFlat(exact, "params", model.Params, model);
                exact.Write(Path.Combine(temp, ExactParamsFile));
            }

            if (reference is not null)
            {
                var r = new SafeTensorsWriter();
                AddFlat(r, "params", reference.Params, reference);
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

    /// <summary>The exact F32 parameters, written when the model is saved in a narrower type.</summary>
    public const string ExactParamsFile = "params.safetensors";

    /// <summary>Loads a checkpoint's model weights: the exact parameters when present, else <c>model/</c>.</summary>
    public static void LoadWeights(string directory, Transformer model)
    {
        string exact = Path.Combine(directory, ExactParamsFile);
        if (File.Exists(exact))
        {
            using var file = SafeTensorsFile.Open(exact);
            ReadFlat(file, "params", model.Params, model);
        }
        else
        {
            HfCheckpoint.LoadInto(model, Path.Combine(directory, "model"));
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
        LoadWeights(directory, model);
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
    public static string? Latest(string checkpoints) => Ordered(checkpoints).LastOrDefault();

    /// <summary>Deletes all but the newest <paramref name="keepLast"/> complete checkpoints (0: keeps all).</summary>
    public static void KeepLast(string checkpoints, int keepLast)
    {
        if (keepLast <= 0)
        {
            return;
        }

        List<string> all = Ordered(checkpoints);
        foreach (string old in all.Take(Math.Max(0, all.Count - keepLast)))
        {
            Directory.Delete(old, recursive: true);
        }
    }

    /// <summary>The complete checkpoints under <paramref name="checkpoints"/>, oldest first (SFT before RL, then by step).</summary>
    private static List<string> Ordered(string checkpoints)
    {
        if (!Directory.Exists(checkpoints))
        {
            return [];
        }

        return Directory.GetDirectories(checkpoints)
            .Where(d => !d.Contains(".tmp-", StringComparison.Ordinal) && File.Exists(Path.Combine(d, StateFile)))
            .Select(d => (Dir: d, State: JsonNode.Parse(File.ReadAllText(Path.Combine(d, StateFile)))!.AsObject()))
            .OrderBy(c => (string?)c.State["phase"] == "sft" ? 0 : 1)
            .ThenBy(c => HtmlReport.Number(c.State["step"]) ?? 0)
            .Select(c => c.Dir)
            .ToList();
    }

    /// <summary>
    /// Adds a flat buffer in the engine's layout as tensors "name.0", "name.1", ... of at most
    /// <see cref="FlatChunkElements"/> each, read from the device chunk by chunk while writing.
    /// </summary>
    internal static void AddFlat(SafeTensorsWriter writer, string name, DeviceBuffer source, Transformer model, long chunkElements = FlatChunkElements)
    {
        long total = model.Layout.TotalLength;
        for (long start = 0, chunk = 0; start < total; start += chunkElements, chunk++)
        {
            long first = start;
            int length = (int)Math.Min(chunkElements, total - start);
            writer.Add($"{name}.{chunk}", [length], (offset, destination) => model.Acc.Download(source.Slice(first + offset, destination.Length), destination));
        }
    }

    /// <summary>Reads a flat buffer written by <see cref="AddFlat"/> (or, from older checkpoints, one tensor "name"), in bounded pieces.</summary>
    internal static void ReadFlat(SafeTensorsFile file, string name, DeviceBuffer target, Transformer model)
    {
        long total = model.Layout.TotalLength;
        var pieces = new List<(string Tensor, long Start, long Length)>();
        if (file.TryGetInfo(name, out SafeTensorInfo whole))
        {
            pieces.Add((name, 0, whole.ElementCount));
        }
        else
        {
            long start = 0;
            for (int chunk = 0; file.TryGetInfo($"{name}.{chunk}", out SafeTensorInfo info); chunk++)
            {
                pieces.Add(($"{name}.{chunk}", start, info.ElementCount));
                start += info.ElementCount;
            }
        }

        long stored = pieces.Sum(p => p.Length);
        if (pieces.Count == 0 || stored != total)
        {
            throw new EngineException($"{file.FilePath}: '{name}' holds {stored} values, the model needs {total}");
        }

        var buffer = new float[(int)Math.Min(1L << 22, total)];
        foreach (var (tensor, start, length) in pieces)
        {
            for (long done = 0; done < length; done += buffer.Length)
            {
                Span<float> part = buffer.AsSpan(0, (int)Math.Min(buffer.Length, length - done));
                file.ReadAsFloat32(tensor, done, part);
                model.Acc.Upload(target.Slice(start + done, part.Length), part);
            }
        }
    }
}

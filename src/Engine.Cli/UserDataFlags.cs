using System.CommandLine;
using System.Globalization;
using Engine.Core;

namespace Engine.Cli;

/// <summary>
/// The flags of `sft` and `rl` for your own model and data: short names for the task, model and
/// checkpoint settings a user of a dataset file sets (each is also `--set section.key=value`, and the
/// task and model ones `--task-X` / `--model-X`).
/// </summary>
internal sealed class UserDataFlags
{
    private readonly Option<string?> model = new("--model") { Description = "a Hugging Face checkpoint directory to start from (model.init_from)" };
    private readonly Option<string?> data = new("--data") { Description = "the training file, .jsonl or .parquet (task.name)" };
    private readonly Option<string?> evalData = new("--eval-data") { Description = "the evaluation file; without it --eval-fraction of --data is held out (task.eval_data)" };
    private readonly Option<string?> evalFraction = new("--eval-fraction") { Description = "share of --data held out for evaluation, default 0.1 (task.eval_fraction)" };
    private readonly Option<string?> promptField = new("--prompt-field") { Description = "the row field holding the prompt, default prompt (task.prompt_field)" };
    private readonly Option<string?> answerField = new("--answer-field") { Description = "the row field holding the answer, default answer (task.answer_field)" };
    private readonly Option<string?> messagesField = new("--messages-field") { Description = "the row field holding a chat (role/content list) when a row has no prompt field, default messages (task.messages_field)" };
    private readonly Option<string?> onMalformed = new("--on-malformed") { Description = "fail (default: stop naming file and line) or skip (count the row) for a row that cannot be used (task.on_malformed)" };
    private readonly Option<string[]> reward = new("--reward") { Description = "exact | numeric | math | regex:PATTERN | contains, each NAME[:WEIGHT], plus length:MAX_CHARS[:WEIGHT]; repeat or separate with commas to combine (task.reward)", AllowMultipleArgumentsPerToken = false };
    private readonly Option<string?> chatTemplate = new("--chat-template") { Description = "auto (the checkpoint's), chatml, llama3, plain, none or a template file (model.chat_template)" };
    private readonly Option<string?> saveDtype = new("--save-dtype") { Description = "f32, bf16 or f16: the type of the saved weights (checkpoint.save_dtype)" };
    private readonly Option<string?> keepLast = new("--keep-last") { Description = "keep only the newest N checkpoints (checkpoint.keep_last)" };

    public UserDataFlags(Command command)
    {
        foreach (Option option in new Option[] { model, data, evalData, evalFraction, promptField, answerField, messagesField, onMalformed, reward, chatTemplate, saveDtype, keepLast })
        {
            command.Options.Add(option);
        }
    }

    /// <summary>True when --data names a training file.</summary>
    public bool HasData(ParseResult r) => r.GetValue(data) is not null;

    /// <summary>The options with these flags applied.</summary>
    public RunOptions Apply(ParseResult r, RunOptions options)
    {
        TaskOptions task = options.Task;
        task = r.GetValue(data) is string file ? task with { Name = file } : task;
        task = r.GetValue(evalData) is string evalFile ? task with { EvalData = evalFile } : task;
        task = r.GetValue(evalFraction) is string fraction ? task with { EvalFraction = Number(fraction, "--eval-fraction") } : task;
        task = r.GetValue(promptField) is string prompt ? task with { PromptField = prompt } : task;
        task = r.GetValue(answerField) is string answer ? task with { AnswerField = answer } : task;
        task = r.GetValue(messagesField) is string messages ? task with { MessagesField = messages } : task;
        task = r.GetValue(onMalformed) is string policy ? task with { OnMalformed = Config.OptionsBinder.ParseEnum<MalformedRowPolicy>(policy, "--on-malformed") } : task;
        task = r.GetValue(reward) is { Length: > 0 } rewards ? task with { Reward = string.Join(",", rewards) } : task;
        ModelOptions m = options.Model;
        m = r.GetValue(model) is string dir ? m with { InitFrom = dir } : m;
        m = r.GetValue(chatTemplate) is string template ? m with { ChatTemplate = template } : m;
        CheckpointOptions c = options.Checkpoint;
        c = r.GetValue(saveDtype) is string dtype ? c with { SaveDtype = dtype } : c;
        c = r.GetValue(keepLast) is string keep ? c with
        {
            KeepLast = int.TryParse(keep, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) ? n : throw new EngineException($"--keep-last must be an integer, got '{keep}'"),
        } : c;
        return options with { Task = task, Model = m, Checkpoint = c };
    }

    /// <summary>The options, refused when --model-X shape flags come with a checkpoint to start from.</summary>
    public RunOptions Checked(ParseResult r, SettingFlags modelFlags, RunOptions options)
    {
        ModelOptions.RefuseShapeWithCheckpoint(options.Model, modelFlags.Collect(r), "command line");
        return options;
    }

    private static double Number(string text, string flag) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) && double.IsFinite(value)
            ? value
            : throw new EngineException($"{flag} must be a number, got '{text}'");
}

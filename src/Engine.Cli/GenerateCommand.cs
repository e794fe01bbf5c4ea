using System.CommandLine;
using System.Text.Json;

namespace Engine.Cli;

/// <summary><c>engine generate</c>: sample G responses to a prompt from a checkpoint.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint directory (config.json, model.safetensors)", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer file (default: the model directory's tokenizer.json)" };
        var prompt = new Option<string>("--prompt") { Description = "prompt text", Required = true };
        var samples = new Option<int>("-n") { Description = "responses to sample (G)", DefaultValueFactory = _ => 1 };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "most tokens per response", DefaultValueFactory = _ => 64 };
        var temperature = new Option<float>("--temperature") { Description = "softmax temperature (0 = greedy)", DefaultValueFactory = _ => 1f };
        var topP = new Option<float>("--top-p") { Description = "nucleus mass in (0, 1]", DefaultValueFactory = _ => 1f };
        var topK = new Option<int>("--top-k") { Description = "keep the k most likely tokens (0 = all)", DefaultValueFactory = _ => 0 };
        var seed = new Option<ulong>("--seed") { Description = "random seed", DefaultValueFactory = _ => 0 };
        var device = new Option<string?>("--device") { Description = "cpu, opencl[:N], cuda[:N] or auto" };
        var json = new Option<bool>("--json") { Description = "print one JSON object per response (ids, text, log-probs, finish reason)" };
        var sampler = new Option<string>("--sampler") { Description = "full, micro, continuous or infinite (the same responses; memory and speed differ)", DefaultValueFactory = _ => "continuous" };
        var budget = new Option<double?>("--kv-budget-mb") { Description = "KV cache budget in MiB (default 512)" };
        var chatTemplate = new Option<string?>("--chat-template") { Description = "render --prompt as a user message: auto (the model's template), chatml, llama3, plain or a template file; generation stops at the end of the turn (default: the prompt as it is)" };
        var command = new Command("generate", "Sample responses to a prompt.")
        {
            model, tokenizer, prompt, samples, maxNew, temperature, topP, topK, seed, device, json, sampler, budget, chatTemplate,
        };
        command.SetAction(r => CommandLine.Guard(() =>
        {
            using LanguageModel lm = LanguageModel.Load(r.GetValue(model)!, r.GetValue(device), r.GetValue(tokenizer));
            double mb = r.GetValue(budget) ?? lm.GenerationSettings.KvCacheBytes / (double)(1 << 20);
            if (!(mb > 0))
            {
                throw new Core.EngineException($"--kv-budget-mb must be positive, got {mb}");
            }

            lm.GenerationSettings = lm.GenerationSettings with { Sampler = Config.OptionsBinder.ParseEnum<SamplerKind>(r.GetValue(sampler)!, "--sampler"), KvCacheBytes = (long)(mb * (1 << 20)) };
            var options = new SamplingOptions
            {
                MaxNewTokens = r.GetValue(maxNew), Temperature = r.GetValue(temperature), TopP = r.GetValue(topP), TopK = r.GetValue(topK),
                Seed = r.GetValue(seed),
            };
            IReadOnlyList<GenerationGroup> groups;
            if (r.GetValue(chatTemplate) is string choice)
            {
                // The prompt is encoded as training encodes it, and the text decoded without the stop token.
                var codec = Training.TaskCodec.For(lm.Tokenizer ?? throw new Core.EngineException("the model has no tokenizer (give --tokenizer)"),
                    lm.Model.Config.EosTokenIds, Tokenizers.ChatTemplate.Load(choice, r.GetValue(model)));
                groups = lm.Generate([codec.Prompt(r.GetValue(prompt)!)], r.GetValue(samples), options with { EosTokenIds = codec.StopIds });
                foreach (GeneratedSequence s in groups[0].Samples)
                {
                    s.Text = codec.Decode(s.TokenIds);
                }
            }
            else
            {
                groups = lm.Generate([r.GetValue(prompt)!], r.GetValue(samples), options);
            }

            foreach (GeneratedSequence s in groups[0].Samples)
            {
                if (r.GetValue(json))
                {
                    Console.WriteLine(JsonSerializer.Serialize(new
                    {
                        sample = s.SampleIndex, text = s.Text, token_ids = s.TokenIds, finish_reason = s.FinishReason.ToString(),
                        sample_logprobs = s.SampleLogProbs, policy_logprobs = s.PolicyLogProbs,
                    }));
                }
                else
                {
                    Console.WriteLine($"[{s.SampleIndex}] ({s.FinishReason}, {s.TokenIds.Count} tokens) {s.Text}");
                }
            }

            return 0;
        }));
        return command;
    }
}

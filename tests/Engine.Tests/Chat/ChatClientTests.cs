using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Model;
using Engine.Tests.Cli;
using Engine.Tests.Support;
using Engine.Tests.Tokenizers;
using Engine.Tokenizers;
using Microsoft.Extensions.AI;

namespace Engine.Tests.Chat;

/// <summary>
/// LanguageModel through Microsoft.Extensions.AI's IChatClient only: the response (and the stream) must be
/// what the model samples for the chat template's rendering of the conversation (written out by hand here, or
/// taken from Jinja's rendering of the real template), stopping at every end-of-sequence and end-of-turn id.
/// </summary>
public sealed class ChatClientTests
{
    private static LanguageModel TinyModel(ITokenizer tokenizer, ulong seed, IReadOnlyList<int>? eos = null, int dim = 16, int layers = 1)
    {
        var acc = TestDevices.Cpu(2);
        var config = ModelConfig.Gpt2(tokenizer.VocabSize, dim, layers, 2, 160) with { EosTokenIds = eos ?? (tokenizer.EosTokenId is int e ? [e] : []) };
        var model = new Transformer(acc, config);
        ModelInit.Initialize(model, seed, 0.5f); // a large init: the random model's choices vary from token to token
        return new LanguageModel(acc, model, tokenizer, null, "")
        {
            GenerationSettings = new GenerationSettings { MaxConcurrentSequences = 2, KvCacheBytes = 1L << 20 },
        };
    }

    private static readonly ChatMessage[] Conversation =
    [
        new(ChatRole.System, "be brief"),
        new(ChatRole.User, "hello there"),
    ];

    [Fact]
    public async Task ChatML_conversation_through_IChatClient_matches_the_model_on_the_ChatML_prompt()
    {
        using LanguageModel model = TinyModel(TokenizerFixtures.QwenStyle, 4);
        using IChatClient client = model.AsChatClient("tiny-qwen-style");
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 12 };

        ChatResponse response = await client.GetResponseAsync(Conversation, options);

        const string prompt = "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n";
        GeneratedSequence expected = Reference(model, model.Encode(prompt), 12, stops: ["<|im_end|>"]);
        Assert.Equal(model.Decode(expected.TokenIds.Where(id => !TokenizerFixtures.QwenStyle.IsSpecialToken(id)).ToArray()), response.Text);
        Assert.Equal(ChatRole.Assistant, Assert.Single(response.Messages).Role);
        Assert.Equal(expected.FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(expected.TokenIds.Count, response.Usage!.OutputTokenCount);
        Assert.Equal(model.Encode(prompt).Length, response.Usage.InputTokenCount);
        Assert.Equal("tiny-qwen-style", response.ModelId);
        Assert.Equal("tiny-qwen-style", client.GetService<ChatClientMetadata>()!.DefaultModelId);
    }

    [Fact]
    public async Task The_model_directory_template_renders_the_chat_as_Jinja_does()
    {
        // The template's text and Jinja's rendering of it come from the chat-template known answers (make_known_answers.py).
        using JsonDocument answers = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat_templates", "known_answers.json")));
        string template = answers.RootElement.GetProperty("chatml_default_system_template").GetString()!;
        JsonElement known = answers.RootElement.GetProperty("cases").EnumerateArray()
            .First(c => c.GetProperty("template").GetString() == "chatml_default_system" && c.GetProperty("messages").GetArrayLength() == 1);
        string userText = known.GetProperty("messages")[0].GetProperty("content").GetString()!;
        using var dir = new TempDir();
        File.WriteAllText(dir.File("tokenizer_config.json"), new JsonObject { ["chat_template"] = template }.ToJsonString());
        var tokenizer = TokenizerFixtures.QwenStyle;
        var acc = TestDevices.Cpu(2);
        var transformer = new Transformer(acc, ModelConfig.Gpt2(tokenizer.VocabSize, 16, 1, 2, 96) with { EosTokenIds = [] });
        ModelInit.Initialize(transformer, 8, 0.5f);
        using var model = new LanguageModel(acc, transformer, tokenizer, null, "")
        {
            SourceDirectory = dir.Path,
            GenerationSettings = new GenerationSettings { MaxConcurrentSequences = 2, KvCacheBytes = 1L << 20 },
        };
        using IChatClient client = model.AsChatClient();

        ChatResponse response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, userText)], new ChatOptions { Temperature = 0, MaxOutputTokens = 8 });

        int[] prompt = model.Encode(known.GetProperty("text").GetString()!);
        Assert.Equal(prompt.Length, response.Usage!.InputTokenCount);
        GeneratedSequence expected = Reference(model, prompt, 8, stops: ["<|im_end|>"]);
        Assert.Equal(model.Decode(expected.TokenIds.Where(id => !tokenizer.IsSpecialToken(id)).ToArray()), response.Text);
    }

    [Fact]
    public async Task Streaming_yields_each_token_as_it_is_generated_and_adds_up_to_the_response()
    {
        // A wider, deeper model: each decode step costs enough time for the stream's timing to show.
        using LanguageModel model = TinyModel(TokenizerFixtures.QwenStyle, 5, dim: 64, layers: 4);
        using IChatClient client = model.AsChatClient();
        const int maxTokens = 96;

        // A seed whose response runs long (through the abstraction: Usage says how many tokens were sampled).
        ChatOptions options = null!;
        ChatResponse whole = null!;
        for (long seed = 0; seed < 40; seed++)
        {
            options = new ChatOptions { Temperature = 1f, Seed = seed, MaxOutputTokens = maxTokens };
            whole = await client.GetResponseAsync(Conversation, options);
            if (whole.Usage!.OutputTokenCount >= 48)
            {
                break;
            }
        }

        Assert.True(whole.Usage!.OutputTokenCount >= 48, "no seed gave a response of 48 tokens or more");
        bool incremental = false;
        for (int attempt = 0; attempt < 3 && !incremental; attempt++)
        {
            var streamed = new StringBuilder();
            var updates = new List<ChatResponseUpdate>();
            var arrivals = new List<double>();
            var clock = Stopwatch.StartNew();
            await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Conversation, options))
            {
                arrivals.Add(clock.Elapsed.TotalMilliseconds);
                updates.Add(update);
                streamed.Append(update.Text);
            }

            Assert.Equal(whole.Text, streamed.ToString());
            Assert.True(updates.Count > whole.Usage.OutputTokenCount / 2, $"{updates.Count} updates for {whole.Usage.OutputTokenCount} tokens: the stream is not per token");
            Assert.All(updates, u => Assert.Equal(ChatRole.Assistant, u.Role));
            Assert.Equal(whole.FinishReason, updates[^1].FinishReason);
            ChatResponse combined = updates.ToChatResponse(); // the abstraction's own assembly of a stream
            Assert.Equal(whole.Text, combined.Text);
            Assert.Equal(whole.Usage.OutputTokenCount, combined.Usage!.OutputTokenCount);

            // Live: the first piece comes after one decode step, not after the whole response (the clock is noisy
            // on a shared machine, so a run that misses the bar is tried again).
            incremental = arrivals[0] < 0.5 * arrivals[^1];
        }

        Assert.True(incremental, "the first streamed piece arrived no earlier than half the response's time in 3 runs: the stream is not live");
    }

    [Fact]
    public async Task A_reader_that_stops_early_stops_the_generation_and_the_client_stays_usable()
    {
        using LanguageModel model = TinyModel(TokenizerFixtures.QwenStyle, 5);
        using IChatClient client = model.AsChatClient();
        var options = new ChatOptions { Temperature = 0.8f, Seed = 7, MaxOutputTokens = 40 };
        ChatResponse whole = await client.GetResponseAsync(Conversation, options);

        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Conversation, options))
        {
            break;
        }

        using var cancel = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Conversation, options, cancel.Token))
            {
                await cancel.CancelAsync();
            }
        });

        ChatResponse again = await client.GetResponseAsync(Conversation, options);
        Assert.Equal(whole.Text, again.Text);
        Assert.Equal(whole.Usage!.OutputTokenCount, again.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task Without_template_tokens_the_conversation_is_plain_lines_after_BOS()
    {
        var tokenizer = new CharTokenizer("abcdefghijklmnopqrstuvwxyz :\n");
        using LanguageModel model = TinyModel(tokenizer, 6);
        using IChatClient client = model.AsChatClient();

        ChatResponse response = await client.GetResponseAsync(Conversation, new ChatOptions { Temperature = 0, MaxOutputTokens = 10 });

        int[] prompt = [tokenizer.BosTokenId!.Value, .. model.Encode("be brief\nhello there")];
        GeneratedSequence expected = Reference(model, prompt, 10, stops: []);
        Assert.Equal(model.Decode(expected.TokenIds.Where(id => !tokenizer.IsSpecialToken(id)).ToArray()), response.Text);
        Assert.Equal(prompt.Length, response.Usage!.InputTokenCount);
    }

    [Fact]
    public async Task Every_end_of_sequence_id_ends_the_response()
    {
        var tokenizer = new CharTokenizer("abcdefghijklmnopqrstuvwxyz :\n");
        int a = IdOf(tokenizer, "a"), e = IdOf(tokenizer, "e");
        using LanguageModel model = TinyModel(tokenizer, 9, eos: [a, e]); // the model's EOS ids; the tokenizer's <eos> too
        using IChatClient client = model.AsChatClient();
        var endings = new HashSet<string>();
        for (long seed = 0; seed < 12; seed++)
        {
            ChatResponse response = await client.GetResponseAsync(Conversation, new ChatOptions { Temperature = 1f, Seed = seed, MaxOutputTokens = 60 });
            string text = response.Text;
            Assert.DoesNotContain('a', text.Length > 0 ? text[..^1] : text);
            Assert.DoesNotContain('e', text.Length > 0 ? text[..^1] : text);
            if (response.FinishReason == ChatFinishReason.Stop)
            {
                endings.Add(text.Length > 0 && text[^1] is 'a' or 'e' ? text[^1].ToString() : "<eos>");
            }
        }

        Assert.True(endings.Count >= 2, $"the responses ended only at {string.Join(", ", endings)}: too few seeds to see the stops");

        static int IdOf(CharTokenizer t, string s) => t.Encode(s).Single();
    }

    [Fact]
    public async Task A_conversation_longer_than_the_context_is_an_engine_exception()
    {
        using LanguageModel model = TinyModel(new CharTokenizer("abcdefghijklmnopqrstuvwxyz :\n"), 6);
        using IChatClient client = model.AsChatClient();
        var e = await Assert.ThrowsAsync<Engine.Core.EngineException>(() => client.GetResponseAsync(new string('a', 200)));
        Assert.Contains("positions", e.Message);
    }

    /// <summary>The model's own sample for <paramref name="prompt"/>, through LanguageModel.Generate (not the chat client).</summary>
    private static GeneratedSequence Reference(LanguageModel model, int[] prompt, int maxNew, string[] stops)
    {
        int[] eos = [.. model.Model.Config.EosTokenIds, .. stops.Select(s => model.Encode(s).Single())];
        if (model.Tokenizer!.EosTokenId is int tokenizerEos)
        {
            eos = [.. eos, tokenizerEos];
        }

        return model.Generate([prompt], 1, new SamplingOptions { Temperature = 0, MaxNewTokens = maxNew, EosTokenIds = eos })[0].Samples[0];
    }
}

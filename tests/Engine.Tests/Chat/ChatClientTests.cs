using System.Text;
using Engine.Model;
using Engine.Tests.Support;
using Engine.Tests.Tokenizers;
using Engine.Tokenizers;
using Microsoft.Extensions.AI;

namespace Engine.Tests.Chat;

/// <summary>
/// LanguageModel through Microsoft.Extensions.AI's IChatClient only: the response (and the stream)
/// must be what the model samples for the hand-written prompt of the conversation (ChatML with a
/// tokenizer that has &lt;|im_start|&gt;, "role: content" lines otherwise).
/// </summary>
public sealed class ChatClientTests
{
    private static LanguageModel TinyModel(ITokenizer tokenizer, ulong seed)
    {
        var acc = TestDevices.Cpu(2);
        var config = ModelConfig.Gpt2(tokenizer.VocabSize, 16, 1, 2, 96) with { EosTokenIds = tokenizer.EosTokenId is int e ? [e] : [] };
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
        GeneratedSequence expected = Reference(model, prompt, 12, endOfTurn: "<|im_end|>");
        Assert.Equal(model.Decode(expected.TokenIds.Where(id => !TokenizerFixtures.QwenStyle.IsSpecialToken(id)).ToArray()), response.Text);
        Assert.Equal(ChatRole.Assistant, Assert.Single(response.Messages).Role);
        Assert.Equal(expected.FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(expected.TokenIds.Count, response.Usage!.OutputTokenCount);
        Assert.Equal(model.Encode(prompt).Length, response.Usage.InputTokenCount);
        Assert.Equal("tiny-qwen-style", response.ModelId);
        Assert.Equal("tiny-qwen-style", client.GetService<ChatClientMetadata>()!.DefaultModelId);
    }

    [Fact]
    public async Task Streaming_updates_add_up_to_the_response()
    {
        using LanguageModel model = TinyModel(TokenizerFixtures.QwenStyle, 5);
        using IChatClient client = model.AsChatClient();
        var options = new ChatOptions { Temperature = 0.8f, Seed = 7, MaxOutputTokens = 16 };

        ChatResponse whole = await client.GetResponseAsync(Conversation, options);
        var streamed = new StringBuilder();
        var updates = new List<ChatResponseUpdate>();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Conversation, options))
        {
            updates.Add(update);
            streamed.Append(update.Text);
        }

        Assert.Equal(whole.Text, streamed.ToString());
        Assert.True(updates.Count > 1, "one update only: nothing was streamed");
        Assert.All(updates, u => Assert.Equal(ChatRole.Assistant, u.Role));
        Assert.Equal(whole.FinishReason, updates[^1].FinishReason);
        ChatResponse combined = updates.ToChatResponse(); // the abstraction's own assembly of a stream
        Assert.Equal(whole.Text, combined.Text);
        Assert.Equal(whole.Usage!.OutputTokenCount, combined.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task Without_ChatML_tokens_the_conversation_is_role_lines()
    {
        var tokenizer = new CharTokenizer("abcdefghijklmnopqrstuvwxyz :\n");
        using LanguageModel model = TinyModel(tokenizer, 6);
        using IChatClient client = model.AsChatClient();

        ChatResponse response = await client.GetResponseAsync(Conversation, new ChatOptions { Temperature = 0, MaxOutputTokens = 10 });

        GeneratedSequence expected = Reference(model, "system: be brief\nuser: hello there\nassistant:", 10, endOfTurn: null);
        Assert.Equal(model.Decode(expected.TokenIds.Where(id => !tokenizer.IsSpecialToken(id)).ToArray()), response.Text);
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
    private static GeneratedSequence Reference(LanguageModel model, string prompt, int maxNew, string? endOfTurn)
    {
        int[] eos = model.Model.Config.EosTokenIds.ToArray();
        if (endOfTurn is not null)
        {
            eos = [.. eos, model.Encode(endOfTurn).Single()];
        }

        return model.Generate([prompt], 1, new SamplingOptions { Temperature = 0, MaxNewTokens = maxNew, EosTokenIds = eos })[0].Samples[0];
    }
}

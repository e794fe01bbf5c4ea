using System.Runtime.CompilerServices;
using Engine.Core;
using Engine.Generation;
using Engine.Tokenizers;
using Microsoft.Extensions.AI;

namespace Engine.Chat;

/// <summary>
/// A <see cref="LanguageModel"/> as an <see cref="IChatClient"/>: the conversation is rendered by
/// <see cref="ChatPromptFormat"/>, one response is sampled (ChatOptions: temperature, top-p, top-k,
/// max output tokens, seed, stop sequences), and the text is decoded with special tokens skipped.
/// Calls are serialised (the model has one generator).
/// </summary>
/// <remarks>
/// Streaming yields one update per sampled token, each carrying the text that token completes (a
/// multi-byte character split over tokens arrives whole). The generator has no per-token callback
/// yet, so the updates come after the response is sampled, not while it is.
/// </remarks>
internal sealed class LanguageModelChatClient(LanguageModel model, string modelId) : IChatClient
{
    private readonly SemaphoreSlim gate = new(1, 1);
    private readonly ChatClientMetadata metadata = new("engine", null, modelId);

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var (sequence, promptTokens, tokenizer) = await SampleAsync(messages, options, cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, tokenizer.Decode(sequence.TokenIds.ToArray(), skipSpecialTokens: true)))
        {
            ModelId = modelId,
            ResponseId = Guid.NewGuid().ToString("N"),
            FinishReason = Finish(sequence),
            Usage = Usage(sequence, promptTokens),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (sequence, promptTokens, tokenizer) = await SampleAsync(messages, options, cancellationToken).ConfigureAwait(false);
        string responseId = Guid.NewGuid().ToString("N"), messageId = Guid.NewGuid().ToString("N");
        TokenStreamDecoder decoder = tokenizer.CreateStreamDecoder(skipSpecialTokens: true);
        ChatResponseUpdate Update(string text) => new(ChatRole.Assistant, text) { ModelId = modelId, ResponseId = responseId, MessageId = messageId };
        foreach (int id in sequence.TokenIds)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (decoder.Append(id) is { Length: > 0 } piece)
            {
                yield return Update(piece);
            }
        }

        ChatResponseUpdate last = Update(decoder.Flush());
        last.FinishReason = Finish(sequence);
        last.Contents.Add(new UsageContent(Usage(sequence, promptTokens)));
        yield return last;
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? metadata
        : serviceType.IsInstanceOfType(this) ? this
        : serviceType.IsInstanceOfType(model) ? model
        : null;

    public void Dispose() => gate.Dispose();

    private async Task<(GeneratedSequence Sequence, int PromptTokens, ITokenizer Tokenizer)> SampleAsync(IEnumerable<ChatMessage> messages, ChatOptions? options,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ITokenizer tokenizer = model.Tokenizer ?? throw new EngineException("this model has no tokenizer, so it cannot chat");
        var (prompt, endOfTurn) = ChatPromptFormat.Render(tokenizer, messages);
        int[] promptIds = tokenizer.Encode(prompt);
        int room = model.MaxPositions - promptIds.Length;
        if (room < 1)
        {
            throw new EngineException($"the conversation is {promptIds.Length} tokens, and the model takes at most {model.MaxPositions} positions");
        }

        IReadOnlyList<int> eos = model.Model.Config.EosTokenIds.Count > 0 ? model.Model.Config.EosTokenIds
            : tokenizer.EosTokenId is int e ? [e] : [];
        var sampling = new SamplingOptions
        {
            MaxNewTokens = Math.Min(room, options?.MaxOutputTokens ?? room),
            Temperature = options?.Temperature ?? 1f,
            TopP = options?.TopP ?? 1f,
            TopK = options?.TopK ?? 0,
            Seed = (ulong)(options?.Seed ?? 0),
            EosTokenIds = [.. eos, .. endOfTurn],
            StopSequences = options?.StopSequences?.Select(s => (IReadOnlyList<int>)tokenizer.Encode(s)).ToList() ?? [],
        };
        sampling.Validate();
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            return (model.Generate([promptIds], 1, sampling)[0].Samples[0], promptIds.Length, tokenizer);
        }
        finally
        {
            gate.Release();
        }
    }

    private static ChatFinishReason Finish(GeneratedSequence s) =>
        s.FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;

    private static UsageDetails Usage(GeneratedSequence s, int promptTokens) =>
        new() { InputTokenCount = promptTokens, OutputTokenCount = s.TokenIds.Count, TotalTokenCount = promptTokens + s.TokenIds.Count };
}

using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Engine.Core;
using Engine.Generation;
using Engine.Tasks;
using Engine.Tokenizers;
using Engine.Training;
using Microsoft.Extensions.AI;

namespace Engine.Chat;

/// <summary>
/// A <see cref="LanguageModel"/> as an <see cref="IChatClient"/>: the conversation is rendered by the model's
/// <see cref="ChatTemplate"/> through the same <see cref="TaskCodec"/> training uses (BOS, template, and every
/// end-of-sequence and end-of-turn id as a stop), one response is sampled (ChatOptions: temperature, top-p, top-k,
/// max output tokens, seed, stop sequences), and the text is decoded with special tokens skipped. Calls are
/// serialised (the model has one generator).
/// </summary>
/// <remarks>
/// Streaming yields the text of each token as the generator samples it (a multi-byte character split over
/// tokens arrives whole, with the token that completes it): the generator runs on a worker thread and hands
/// each token over through a channel of one, so it is never more than a token ahead of the reader, and a
/// reader that stops (or cancels) stops the generation.
/// </remarks>
internal sealed class LanguageModelChatClient(LanguageModel model, string modelId, ChatTemplate template) : IChatClient
{
    private readonly SemaphoreSlim gate = new(1, 1);
    private readonly ChatClientMetadata metadata = new("engine", null, modelId);

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        Request request = Prepare(messages, options);
        GeneratedSequence sequence = await RunAsync(request, onToken: null, cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, request.Tokenizer.Decode(sequence.TokenIds.ToArray(), skipSpecialTokens: true)))
        {
            ModelId = modelId,
            ResponseId = Guid.NewGuid().ToString("N"),
            FinishReason = Finish(sequence),
            Usage = Usage(sequence, request.PromptIds.Length),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        Request request = Prepare(messages, options);
        string responseId = Guid.NewGuid().ToString("N"), messageId = Guid.NewGuid().ToString("N");
        ChatResponseUpdate Update(string text) => new(ChatRole.Assistant, text) { ModelId = modelId, ResponseId = responseId, MessageId = messageId };

        // The channel holds one token: the generator waits for the reader, so the stream is as live as the reader.
        var tokens = Channel.CreateBounded<int>(new BoundedChannelOptions(1) { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task<GeneratedSequence> generation = RunAsync(request, token => tokens.Writer.WriteAsync(token, stop.Token).AsTask().GetAwaiter().GetResult(), stop.Token);
        _ = generation.ContinueWith(t => tokens.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);
        try
        {
            TokenStreamDecoder decoder = request.Tokenizer.CreateStreamDecoder(skipSpecialTokens: true);
            await foreach (int id in tokens.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                if (decoder.Append(id) is { Length: > 0 } piece)
                {
                    yield return Update(piece);
                }
            }

            GeneratedSequence sequence = await generation.ConfigureAwait(false);
            ChatResponseUpdate last = Update(decoder.Flush());
            last.FinishReason = Finish(sequence);
            last.Contents.Add(new UsageContent(Usage(sequence, request.PromptIds.Length)));
            yield return last;
        }
        finally
        {
            // A reader that leaves early (or cancels) stops the generation; it frees its KV blocks and the gate.
            await stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await generation.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? metadata
        : serviceType.IsInstanceOfType(this) ? this
        : serviceType.IsInstanceOfType(model) ? model
        : null;

    public void Dispose() => gate.Dispose();

    /// <summary>The prompt ids and sampling settings of a request (checked before anything runs).</summary>
    private Request Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ITokenizer tokenizer = model.Tokenizer ?? throw new EngineException("this model has no tokenizer, so it cannot chat");
        TaskCodec codec = TaskCodec.For(tokenizer, model.Model.Config.EosTokenIds, template);
        int[] promptIds = codec.Prompt(messages.Select(m => new ChatTurn(m.Role.Value, m.Text)).ToList());
        int room = model.MaxPositions - promptIds.Length;
        if (room < 1)
        {
            throw new EngineException($"the conversation is {promptIds.Length} tokens, and the model takes at most {model.MaxPositions} positions");
        }

        var sampling = new SamplingOptions
        {
            MaxNewTokens = Math.Min(room, options?.MaxOutputTokens ?? room),
            Temperature = options?.Temperature ?? 1f,
            TopP = options?.TopP ?? 1f,
            TopK = options?.TopK ?? 0,
            Seed = (ulong)(options?.Seed ?? 0),
            EosTokenIds = codec.StopIds,
            StopSequences = options?.StopSequences?.Select(s => (IReadOnlyList<int>)tokenizer.Encode(s)).ToList() ?? [],
        };
        sampling.Validate();
        return new Request(tokenizer, promptIds, sampling);
    }

    /// <summary>Samples the response on a worker thread, one call at a time, reporting each token to <paramref name="onToken"/>.</summary>
    private async Task<GeneratedSequence> RunAsync(Request request, Action<int>? onToken, CancellationToken cancellationToken)
    {
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await Task.Run(
                () => model.GetGenerator().Generate([request.PromptIds], 1, request.Sampling,
                    onToken: onToken is null ? null : (_, _, token) => onToken(token), cancellationToken: cancellationToken)[0].Samples[0],
                cancellationToken).ConfigureAwait(false);
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

    private sealed record Request(ITokenizer Tokenizer, int[] PromptIds, SamplingOptions Sampling);
}

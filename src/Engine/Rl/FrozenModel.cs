using Engine.Core;
using Engine.Model;
using Engine.Tokenizers;

namespace Engine.Rl;

/// <summary>
/// A frozen auxiliary model of an RL step (the KL reference, KDRL's teacher, mixed-policy DAPO's
/// guide): weights only, no gradients and no optimizer state, on the policy's device. It scores the
/// rollout batch's responses through the training forward path, micro-batch by micro-batch, and its
/// log-probs go straight into a column of the batch on the device.
/// </summary>
internal sealed class FrozenModel : IDisposable
{
    private FrozenModel(string role, Transformer model)
    {
        Role = role;
        Model = model;
    }

    /// <summary>"reference", "teacher" or "guide" (for messages).</summary>
    public string Role { get; }

    public Transformer Model { get; }

    /// <summary>A copy of <paramref name="policy"/>'s current weights (the reference at RL start).</summary>
    public static FrozenModel CopyOf(Transformer policy, string role)
    {
        var model = new Transformer(policy.Acc, policy.Config);
        policy.Acc.Copy(model.Params.All, policy.Params.All);
        return new FrozenModel(role, model);
    }

    /// <summary>
    /// Loads a checkpoint onto the policy's device after checking that it speaks the policy's
    /// vocabulary (same size, same tokens, same end-of-sequence ids); otherwise a one-line error.
    /// </summary>
    public static FrozenModel Load(string directory, string role, Transformer policy, ITokenizer? policyTokenizer)
    {
        if (!Directory.Exists(directory))
        {
            throw new EngineException($"{role} checkpoint '{directory}' not found");
        }

        LoadedModel loaded = HfCheckpoint.Load(policy.Acc, directory);
        ITokenizer? tokenizer = null;
        try
        {
            tokenizer = TokenizerLoader.Load(directory);
        }
        catch (EngineException) when (policyTokenizer is null)
        {
            // Without a policy tokenizer there is nothing to compare with; the vocabulary size still is.
        }

        try
        {
            CheckCompatible(role, directory, loaded.Model.Config, tokenizer, policy.Config, policyTokenizer);
        }
        catch
        {
            loaded.Model.Dispose();
            throw;
        }

        return new FrozenModel(role, loaded.Model);
    }

    /// <summary>A frozen copy of <paramref name="source"/> (any device) on the policy's device, checked like <see cref="Load"/>.</summary>
    public static FrozenModel From(LanguageModel source, string role, Transformer policy, ITokenizer? policyTokenizer)
    {
        CheckCompatible(role, "the given model", source.Model.Config, source.Tokenizer, policy.Config, policyTokenizer);
        var model = new Transformer(policy.Acc, source.Model.Config);
        policy.Acc.Upload(model.Params.All, source.Model.Acc.ToArray(source.Model.Params.All));
        return new FrozenModel(role, model);
    }

    /// <summary>
    /// Log-probs of every response token of <paramref name="batch"/> under this model, written into
    /// <paramref name="column"/>, in micro-batches of consecutive sequences.
    /// </summary>
    public void Score(RolloutBatch batch, RolloutColumn column, int microBatch)
    {
        int total = batch.Sequences.Count;
        int[] all = Enumerable.Range(0, total).ToArray();
        for (int start = 0; start < total; start += microBatch)
        {
            int count = Math.Min(microBatch, total - start);
            MicroBatchLayout layout = batch.Layout(PolicyUpdate.Slice(all, start, count), Model.Config.MaxPositions);
            Model.SetTokens(layout.TokenIds, layout.B, layout.T);
            Model.SetTargets(layout.Targets);
            Model.Forward();
            Model.HeadForward(entropy: false);
            batch.Scatter(column, Model.Plan.LogProbs, start, layout);
        }
    }

    public void Dispose() => Model.Dispose();

    internal static void CheckCompatible(string role, string source, ModelConfig config, ITokenizer? tokenizer, ModelConfig policy,
        ITokenizer? policyTokenizer)
    {
        if (config.VocabSize != policy.VocabSize)
        {
            throw new EngineException($"{role} ({source}) has a vocabulary of {config.VocabSize} tokens, the policy {policy.VocabSize}: they must share one tokenizer");
        }

        if (config.MaxPositions < policy.MaxPositions)
        {
            throw new EngineException($"{role} ({source}) takes {config.MaxPositions} positions, fewer than the policy's {policy.MaxPositions}");
        }

        if (tokenizer is not null && policyTokenizer is not null)
        {
            for (int id = 0; id < policy.VocabSize; id++)
            {
                string? a = Spell(tokenizer, id), b = Spell(policyTokenizer, id);
                if (a != b)
                {
                    throw new EngineException($"{role} ({source}) has another tokenizer than the policy: token {id} is '{a}' there and '{b}' in the policy's");
                }
            }

            if (tokenizer.EosTokenId != policyTokenizer.EosTokenId)
            {
                throw new EngineException($"{role} ({source}) ends sequences with token {tokenizer.EosTokenId}, the policy with {policyTokenizer.EosTokenId}");
            }
        }
    }

    private static string? Spell(ITokenizer tokenizer, int id)
    {
        try
        {
            return tokenizer.IdToToken(id);
        }
        catch (Exception e) when (e is EngineException or ArgumentException or KeyNotFoundException or IndexOutOfRangeException)
        {
            return null;
        }
    }
}

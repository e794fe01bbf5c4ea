using Engine.Core;

namespace Engine.Model;

internal sealed partial class Transformer
{
    /// <summary>
    /// Inference forward over <paramref name="n"/> rows already staged in <paramref name="plan"/>
    /// (tokens, positions, slots, row sequences, block tables): writes each row's keys and values
    /// into the cache and leaves the final residual stream in <c>plan.Resid</c>. The rows may mix
    /// prefill and decode of many sequences.
    /// </summary>
    public void ForwardPaged(InferencePlan plan, int n, KvCacheBinding cache)
    {
        if (n <= 0 || n > plan.Capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(n), n, $"rows must be in [1, {plan.Capacity}]");
        }

        Acc.EmbeddingForward(plan.Resid, plan.Tokens, plan.Positions, P(Layout.Wte), P(Layout.Wpe), n, Config.Dim);
        var attention = AttentionCall.Paged(cache, plan.Slots, plan.BlockTables, plan.RowSequence, plan.MaxBlocks);
        for (int l = 0; l < Config.Layers; l++)
        {
            LayerForward(l, plan.Layer, plan.Resid, plan.Resid, plan.Positions, n, attention);
        }
    }

    /// <summary>
    /// Logits of <paramref name="s"/> rows of the last <see cref="ForwardPaged"/> (indices staged
    /// in <c>plan.GatherRows</c>) plus <paramref name="logitBias"/> ([V], optional), then one token drawn per row with the staged sampling inputs.
    /// </summary>
    public void SampleGathered(InferencePlan plan, int s, Tensor logitBias = default)
    {
        if (s <= 0 || s > plan.SampleCapacity)
        {
            throw new ArgumentOutOfRangeException(nameof(s), s, $"rows to sample must be in [1, {plan.SampleCapacity}]");
        }

        int c = Config.Dim;
        Acc.GatherRows(plan.Gathered, plan.Resid, plan.GatherRows, s, c);
        NormForward(plan.NormF, plan.NormFMean, plan.NormFRstd, plan.Gathered, Layout.FinalNormWeight, Layout.FinalNormBias, s);
        Acc.Gemm(plan.Logits, plan.NormF, P(Layout.HeadWeight), s, Config.VocabSize, c, false, true, bias: logitBias);
        Acc.SampleTokens(plan.SampledTokens.All, plan.SampleLogProbs, plan.PolicyLogProbs, plan.Logits, plan.Uniforms, plan.Temperatures,
            plan.TopK, plan.TopP, s, Config.VocabSize);
    }
}

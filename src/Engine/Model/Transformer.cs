using Engine.Core;

namespace Engine.Model;

/// <summary>
/// One decoder-only transformer (GPT-2 or Llama family) on an accelerator: parameters and
/// gradients in flat device buffers, forward over B x T tokens, backward to every parameter.
/// Orchestration only: every step is an op of the accelerator, and nothing here touches tensor
/// elements except small host staging (token ids in, per-row log-probs out).
/// </summary>
internal sealed partial class Transformer : IDisposable
{
    private readonly DeviceBuffer? ropeCos;   // [P, D/2]
    private readonly DeviceBuffer? ropeSin;   // [P, D/2]
    private const int MaxCachedPlans = 4;
    private readonly List<ActivationPlan> plans = [];
    private ActivationPlan? plan;

    public Transformer(Accelerator acc, ModelConfig config)
    {
        config.Validate();
        Acc = acc;
        Config = config;
        Layout = new ParameterLayout(config);
        Params = acc.Allocate(Layout.TotalLength);
        if (config.Positions == PositionKind.Rope)
        {
            var (cos, sin) = RopeTables.Compute(config);
            ropeCos = acc.Allocate(cos.Length);
            ropeSin = acc.Allocate(sin.Length);
            acc.Upload(ropeCos.All, cos);
            acc.Upload(ropeSin.All, sin);
        }
    }

    public Accelerator Acc { get; }

    public ModelConfig Config { get; }

    public ParameterLayout Layout { get; }

    /// <summary>All parameters, laid out as <see cref="Layout"/> says.</summary>
    public DeviceBuffer Params { get; }

    /// <summary>Gradients in the same layout; allocated by <see cref="EnsureGradients"/>.</summary>
    public DeviceBuffer? Grads { get; private set; }

    /// <summary>The activation plan of the last forward.</summary>
    public ActivationPlan Plan => plan ?? throw new InvalidOperationException("no forward pass has been prepared");

    /// <summary>View of a parameter tensor, or the empty tensor when it is absent (null).</summary>
    public Tensor P(ParamTensor? t) => t is null ? default : Params.Slice(t.Offset, t.Length);

    /// <summary>View of a gradient tensor, or the empty tensor when it is absent (null).</summary>
    public Tensor G(ParamTensor? t) => t is null ? default : Gradients.Slice(t.Offset, t.Length);

    private DeviceBuffer Gradients => Grads ?? throw new InvalidOperationException("gradients were not allocated (EnsureGradients)");

    /// <summary>Allocates the gradient buffer (zeroed) if it does not exist yet.</summary>
    public void EnsureGradients() => Grads ??= Acc.Allocate(Layout.TotalLength);

    /// <summary>Sets every gradient to zero.</summary>
    public void ZeroGradients()
    {
        EnsureGradients();
        Acc.Zero(Gradients.All);
    }

    /// <summary>
    /// Makes the plan for (B, T) current, reusing one of the few most recently used plans (RL
    /// batches come in a handful of padded lengths) or allocating it.
    /// </summary>
    public ActivationPlan Prepare(int b, int t)
    {
        if (b <= 0 || t <= 0)
        {
            throw new EngineException($"batch and sequence length must be positive, got B={b}, T={t}");
        }

        if (t > Config.MaxPositions)
        {
            throw new EngineException($"sequence length {t} exceeds the model's {Config.MaxPositions} positions");
        }

        ActivationPlan? cached = null;
        foreach (ActivationPlan p in plans)
        {
            if (p.B == b && p.T == t)
            {
                cached = p;
            }
        }

        if (cached is null)
        {
            if (plans.Count == MaxCachedPlans)
            {
                plans[0].Dispose();
                plans.RemoveAt(0);
            }

            cached = new ActivationPlan(Acc, Config, b, t);
        }
        else if (!ReferenceEquals(plans[^1], cached))
        {
            plans.Remove(cached);
            plans.Add(cached);
        }

        if (plans.Count == 0 || !ReferenceEquals(plans[^1], cached))
        {
            plans.Add(cached);
        }

        plan = cached;
        return plan;
    }

    /// <summary>
    /// Uploads B rows of T token ids (positions 0..T-1 in each row) after checking every id.
    /// </summary>
    public ActivationPlan SetTokens(ReadOnlySpan<int> tokens, int b, int t)
    {
        if (tokens.Length != (long)b * t)
        {
            throw new EngineException($"expected {b}x{t} = {(long)b * t} token ids, got {tokens.Length}");
        }

        for (int i = 0; i < tokens.Length; i++)
        {
            if ((uint)tokens[i] >= (uint)Config.VocabSize)
            {
                throw new EngineException($"token id {tokens[i]} at row {i / t}, position {i % t} is outside the vocabulary [0, {Config.VocabSize})");
            }
        }

        ActivationPlan p = Prepare(b, t);
        Acc.Upload(p.Tokens, tokens);
        for (int i = 0; i < p.N; i++)
        {
            p.HostPositions[i] = i % t;
        }

        Acc.Upload(p.Positions, p.HostPositions);
        return p;
    }

    /// <summary>Forward through every block and the final norm (the LM head's input lands in <see cref="ActivationPlan.NormF"/>).</summary>
    public void Forward()
    {
        ActivationPlan a = Plan;
        ModelConfig cfg = Config;
        int n = a.N, c = cfg.Dim;
        Acc.EmbeddingForward(a.Resid[0], a.Tokens, a.Positions, P(Layout.Wte), P(Layout.Wpe), n, c);
        var attention = AttentionCall.Dense(a.B, a.T);
        for (int l = 0; l < cfg.Layers; l++)
        {
            LayerForward(l, a.Layers[l], a.Resid[l], a.Resid[l + 1], a.Positions, n, attention);
        }

        NormForward(a.NormF, a.NormFMean, a.NormFRstd, a.Resid[cfg.Layers], Layout.FinalNormWeight, Layout.FinalNormBias, n);
    }

    /// <summary>
    /// One block: <c>output = mid + MLP(norm2(mid))</c> with <c>mid = input + Attn(norm1(input))</c>.
    /// Training and sampling share this code; only the attention call differs (dense causal over
    /// B x T, or paged over the KV cache). <paramref name="output"/> may be <paramref name="input"/>.
    /// </summary>
    private void LayerForward(int l, LayerActivations x, Tensor input, Tensor output, Tensor positions, int n, in AttentionCall attention)
    {
        ModelConfig cfg = Config;
        LayerParams w = Layout.Layers[l];
        int c = cfg.Dim;
        NormForward(x.Norm1, x.Norm1Mean, x.Norm1Rstd, input, w.Norm1Weight, w.Norm1Bias, n);

        // qkv[N, (Hq+2Hkv)D] = norm1 W_qkv^T + b
        if (x.QkNorm is { } qk)
        {
            // Qwen3: each query and key head RMS-normalised (own weights [D]) before RoPE; see QkNormActivations.
            int d = cfg.HeadDim;
            Acc.Gemm(qk.Raw, x.Norm1, P(w.QkvWeight), n, cfg.QkvDim, c, false, true, bias: P(w.QkvBias));
            Acc.GatherRows(qk.QRaw, qk.Raw, qk.QRows, n * cfg.Heads, d);
            Acc.GatherRows(qk.KRaw, qk.Raw, qk.KRows, n * cfg.KvHeads, d);
            Acc.RmsNormForward(qk.QNormed, qk.QRstd, qk.QRaw, P(w.QNormWeight), n * cfg.Heads, d, cfg.NormEps);
            Acc.RmsNormForward(qk.KNormed, qk.KRstd, qk.KRaw, P(w.KNormWeight), n * cfg.KvHeads, d, cfg.NormEps);
            Acc.GatherRows(x.Qkv, qk.Source, qk.AssembleRows, n * (cfg.Heads + 2 * cfg.KvHeads), d);
        }
        else
        {
            Acc.Gemm(x.Qkv, x.Norm1, P(w.QkvWeight), n, cfg.QkvDim, c, false, true, bias: P(w.QkvBias));
        }

        if (cfg.Positions == PositionKind.Rope)
        {
            Acc.RopeForward(x.Qkv, positions, ropeCos!.All, ropeSin!.All, n, cfg.QkvDim, 0, cfg.Heads + cfg.KvHeads, cfg.HeadDim);
        }

        if (attention.Cache is { } cache)
        {
            Acc.KvCacheWrite(cache.Buffer.All, x.Qkv, attention.Slots, n, cfg.Heads, l, cache.Shape);
            Acc.PagedAttention(x.Attn, x.Qkv, cache.Buffer.All, attention.BlockTables, attention.RowSequence, positions, n,
                attention.MaxBlocks, cfg.Heads, l, cache.Shape, AttentionScale);
        }
        else
        {
            Acc.AttentionForward(x.Attn, x.Lse, x.Qkv, attention.B, attention.T, cfg.Heads, cfg.KvHeads, cfg.HeadDim, AttentionScale);
        }

        // mid[N, C] = input + attn W_o^T + b
        // n rows only: an inference plan's buffers hold its capacity (e.g. 256 prefill rows), a decode step uses a few
        long rows = (long)n * c;
        Acc.Copy(x.ResidMid.Slice(0, rows), input.Slice(0, rows));
        Acc.Gemm(x.ResidMid, x.Attn, P(w.AttnOutWeight), n, c, cfg.AttnDim, false, true, beta: 1f, bias: P(w.AttnOutBias));

        NormForward(x.Norm2, x.Norm2Mean, x.Norm2Rstd, x.ResidMid, w.Norm2Weight, w.Norm2Bias, n);
        Acc.Gemm(x.MlpIn, x.Norm2, P(w.MlpInWeight), n, cfg.MlpInDim, c, false, true, bias: P(w.MlpInBias));
        if (cfg.Mlp == MlpKind.Gelu)
        {
            Acc.GeluForward(x.Act, x.MlpIn, (long)n * cfg.FfnDim);
        }
        else
        {
            Acc.SwiGluForward(x.Act, x.MlpIn, n, cfg.FfnDim);
        }

        // output[N, C] = mid + act W_out^T + b
        Acc.Copy(output.Slice(0, rows), x.ResidMid.Slice(0, rows));
        Acc.Gemm(output, x.Act, P(w.MlpOutWeight), n, c, cfg.FfnDim, false, true, beta: 1f, bias: P(w.MlpOutBias));
    }

    /// <summary>Logits [N, V] of every row, from the last <see cref="Forward"/>.</summary>
    public void Logits(Tensor logits)
    {
        ActivationPlan a = Plan;
        Acc.Gemm(logits, a.NormF, P(Layout.HeadWeight), a.N, Config.VocabSize, Config.Dim, false, true);
    }

    /// <summary>Uploads per-row targets (negative: not a target) for the head ops.</summary>
    public void SetTargets(ReadOnlySpan<int> targets)
    {
        ActivationPlan a = Plan;
        for (int i = 0; i < targets.Length; i++)
        {
            if (targets[i] >= Config.VocabSize)
            {
                throw new EngineException($"target id {targets[i]} at row {i} is outside the vocabulary [0, {Config.VocabSize})");
            }
        }

        Acc.Upload(a.Targets, targets);
    }

    /// <summary>Log-probs (and optionally entropies) of the uploaded targets, into the plan's LogProbs/Entropy.</summary>
    public void HeadForward(bool entropy)
    {
        ActivationPlan a = Plan;
        Acc.TokenLogProbForward(a.LogProbs, entropy ? a.Entropy : default, a.NormF, P(Layout.HeadWeight), a.Targets,
            a.N, Config.Dim, Config.VocabSize);
    }

    /// <summary>
    /// Head forward + backward in one pass with dL/dlogp taken from the plan's DLogProbs, then the
    /// backward through every block. Gradients accumulate into <see cref="Grads"/>.
    /// </summary>
    public void HeadForwardBackward()
    {
        ActivationPlan a = Plan;
        EnsureGradients();
        Acc.TokenLogProbForwardBackward(a.LogProbs, a.DNorm, G(Layout.HeadWeight), a.DLogProbs, a.NormF, P(Layout.HeadWeight),
            a.Targets, a.N, Config.Dim, Config.VocabSize);
        BackwardFromFinalNorm();
    }

    /// <summary>
    /// Backward from <paramref name="dlogp"/> = dL/dlogp [N] (and <paramref name="dentropy"/> = dL/dentropy [N],
    /// or empty) of the plan's rows, recomputing the head's logits; gradients accumulate into
    /// <see cref="Grads"/>. The caller owns the gradient buffers (the RL loss terms write them).
    /// </summary>
    public void HeadBackward(Tensor dlogp, Tensor dentropy)
    {
        ActivationPlan a = Plan;
        EnsureGradients();
        Acc.TokenLogProbBackward(a.DNorm, G(Layout.HeadWeight), dlogp, dentropy, a.NormF,
            P(Layout.HeadWeight), a.Targets, a.N, Config.Dim, Config.VocabSize);
        BackwardFromFinalNorm();
    }

    /// <summary>
    /// Next-token cross-entropy on the uploaded tokens: targets are the following token of the
    /// same row, weighted by <paramref name="targetMask"/> [B, T] (1 where token t counts as a
    /// target; empty: all). Returns the mean loss over counted targets and accumulates gradients.
    /// </summary>
    public float ForwardBackwardNextToken(ReadOnlySpan<float> targetMask = default)
    {
        ActivationPlan a = Plan;
        float count = StageNextTokenTargets(targetMask);
        float scale = count > 0 ? -1f / count : 0f;
        for (int i = 0; i < a.N; i++)
        {
            a.HostGradients[i] = a.HostWeights[i] * scale;
        }

        Acc.Upload(a.DLogProbs, a.HostGradients);
        Forward();
        HeadForwardBackward();
        return MeanLoss(count);
    }

    /// <summary>Next-token cross-entropy without gradients (evaluation).</summary>
    public float NextTokenLoss(ReadOnlySpan<float> targetMask = default)
    {
        float count = StageNextTokenTargets(targetMask);
        Forward();
        HeadForward(entropy: false);
        return MeanLoss(count);
    }

    public void Dispose()
    {
        foreach (ActivationPlan p in plans)
        {
            p.Dispose();
        }

        Grads?.Dispose();
        Params.Dispose();
        ropeCos?.Dispose();
        ropeSin?.Dispose();
    }

    private float AttentionScale => 1f / MathF.Sqrt(Config.HeadDim);

    /// <summary>Stages targets = next token (or -1) and host weights = mask; returns the number of counted targets.</summary>
    private float StageNextTokenTargets(ReadOnlySpan<float> targetMask)
    {
        ActivationPlan a = Plan;
        if (!targetMask.IsEmpty && targetMask.Length != a.N)
        {
            throw new EngineException($"target mask has {targetMask.Length} entries, expected B*T = {a.N}");
        }

        Span<int> targets = a.HostTargets;
        Acc.Download(a.Tokens, targets);
        float count = 0;
        for (int i = 0; i < a.N; i++)
        {
            bool last = i % a.T == a.T - 1;
            float weight = last ? 0f : targetMask.IsEmpty ? 1f : targetMask[i + 1];
            int next = last ? -1 : targets[i + 1];
            targets[i] = weight != 0 ? next : -1;
            a.HostWeights[i] = weight;
            count += weight;
        }

        Acc.Upload(a.Targets, a.HostTargets);
        return count;
    }

    private float MeanLoss(float count)
    {
        ActivationPlan a = Plan;
        if (count <= 0)
        {
            return 0f;
        }

        Acc.Download(a.LogProbs, a.HostLogProbs);
        double sum = 0;
        for (int i = 0; i < a.N; i++)
        {
            sum -= (double)a.HostLogProbs[i] * a.HostWeights[i];
        }

        return (float)(sum / count);
    }

    private void NormForward(Tensor output, Tensor mean, Tensor rstd, Tensor x, ParamTensor weight, ParamTensor? bias, int n)
    {
        if (Config.Norm == NormKind.LayerNorm)
        {
            Acc.LayerNormForward(output, mean, rstd, x, P(weight), P(bias), n, Config.Dim, Config.NormEps);
        }
        else
        {
            Acc.RmsNormForward(output, rstd, x, P(weight), n, Config.Dim, Config.NormEps);
        }
    }

    private void NormBackward(Tensor dx, Tensor dout, Tensor x, Tensor mean, Tensor rstd, ParamTensor weight, ParamTensor? bias, int n)
    {
        if (Config.Norm == NormKind.LayerNorm)
        {
            Acc.LayerNormBackward(dx, G(weight), G(bias), dout, x, P(weight), mean, rstd, n, Config.Dim);
        }
        else
        {
            Acc.RmsNormBackward(dx, G(weight), dout, x, P(weight), rstd, n, Config.Dim);
        }
    }

    /// <summary>Backward from dL/d(final norm output), held in the plan's DNorm.</summary>
    private void BackwardFromFinalNorm()
    {
        ActivationPlan a = Plan;
        ModelConfig cfg = Config;
        int n = a.N, c = cfg.Dim;
        Acc.Zero(a.DResid);
        NormBackward(a.DResid, a.DNorm, a.Resid[cfg.Layers], a.NormFMean, a.NormFRstd, Layout.FinalNormWeight, Layout.FinalNormBias, n);
        for (int l = cfg.Layers - 1; l >= 0; l--)
        {
            LayerParams w = Layout.Layers[l];
            LayerActivations x = a.Layers[l];

            // DResid holds dL/dresid[l+1]. MLP output projection: resid[l+1] = residMid + act W_out^T + b.
            Acc.Gemm(a.DAct, a.DResid, P(w.MlpOutWeight), n, cfg.FfnDim, c, false, false);
            Acc.Gemm(G(w.MlpOutWeight), a.DResid, x.Act, c, cfg.FfnDim, n, true, false, beta: 1f);
            if (w.MlpOutBias is not null)
            {
                Acc.BiasBackward(G(w.MlpOutBias), a.DResid, n, c);
            }

            if (cfg.Mlp == MlpKind.Gelu)
            {
                Acc.GeluBackward(a.DMlpIn, a.DAct, x.MlpIn, (long)n * cfg.FfnDim);
            }
            else
            {
                Acc.SwiGluBackward(a.DMlpIn, a.DAct, x.MlpIn, n, cfg.FfnDim);
            }

            Acc.Gemm(a.DNorm, a.DMlpIn, P(w.MlpInWeight), n, c, cfg.MlpInDim, false, false);
            Acc.Gemm(G(w.MlpInWeight), a.DMlpIn, x.Norm2, cfg.MlpInDim, c, n, true, false, beta: 1f);
            if (w.MlpInBias is not null)
            {
                Acc.BiasBackward(G(w.MlpInBias), a.DMlpIn, n, cfg.MlpInDim);
            }

            NormBackward(a.DResid, a.DNorm, x.ResidMid, x.Norm2Mean, x.Norm2Rstd, w.Norm2Weight, w.Norm2Bias, n);

            // DResid now holds dL/dresidMid. Attention output projection: residMid = resid + attn W_o^T + b.
            Acc.Gemm(a.DAttn, a.DResid, P(w.AttnOutWeight), n, cfg.AttnDim, c, false, false);
            Acc.Gemm(G(w.AttnOutWeight), a.DResid, x.Attn, c, cfg.AttnDim, n, true, false, beta: 1f);
            if (w.AttnOutBias is not null)
            {
                Acc.BiasBackward(G(w.AttnOutBias), a.DResid, n, c);
            }

            Acc.AttentionBackward(a.DQkv, a.DAttn, x.Qkv, x.Attn, x.Lse, a.B, a.T, cfg.Heads, cfg.KvHeads, cfg.HeadDim, AttentionScale);
            if (cfg.Positions == PositionKind.Rope)
            {
                Acc.RopeBackward(a.DQkv, a.Positions, ropeCos!.All, ropeSin!.All, n, cfg.QkvDim, 0, cfg.Heads + cfg.KvHeads, cfg.HeadDim);
            }

            Tensor dQkv = a.DQkv;
            if (x.QkNorm is { } qk)
            {
                // The transpose of the forward's gathers (scatter-adds into zeroed buffers) around the row RMSNorm backward.
                QkNormActivations g = a.QkNorm!.Gradients!;
                int d = cfg.HeadDim;
                Acc.Zero(g.Source);
                Acc.EmbeddingBackward(g.Source, default, a.DQkv, qk.AssembleRows, default, n * (cfg.Heads + 2 * cfg.KvHeads), d);
                Acc.Zero(g.QRaw);
                Acc.Zero(g.KRaw);
                Acc.RmsNormBackward(g.QRaw, G(w.QNormWeight), g.QNormed, qk.QRaw, P(w.QNormWeight), qk.QRstd, n * cfg.Heads, d);
                Acc.RmsNormBackward(g.KRaw, G(w.KNormWeight), g.KNormed, qk.KRaw, P(w.KNormWeight), qk.KRstd, n * cfg.KvHeads, d);
                Acc.EmbeddingBackward(g.Raw, default, g.QRaw, qk.QRows, default, n * cfg.Heads, d);
                Acc.EmbeddingBackward(g.Raw, default, g.KRaw, qk.KRows, default, n * cfg.KvHeads, d);
                dQkv = g.Raw;
            }

            Acc.Gemm(a.DNorm, dQkv, P(w.QkvWeight), n, c, cfg.QkvDim, false, false);
            Acc.Gemm(G(w.QkvWeight), dQkv, x.Norm1, cfg.QkvDim, c, n, true, false, beta: 1f);
            if (w.QkvBias is not null)
            {
                Acc.BiasBackward(G(w.QkvBias), dQkv, n, cfg.QkvDim);
            }

            NormBackward(a.DResid, a.DNorm, a.Resid[l], x.Norm1Mean, x.Norm1Rstd, w.Norm1Weight, w.Norm1Bias, n);
        }

        Acc.EmbeddingBackward(G(Layout.Wte), G(Layout.Wpe), a.DResid, a.Tokens, a.Positions, n, c);
    }
}

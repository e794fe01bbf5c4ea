using System.Diagnostics;
using Engine.Core;
using Engine.Model;
using Engine.Util;

namespace Engine.Generation;

/// <summary>Settings of the generation engine (not of sampling).</summary>
internal sealed record GeneratorOptions
{
    /// <summary>Responses decoded at the same time (rows of a decode step).</summary>
    public int MaxSlots { get; init; } = 16;

    /// <summary>Bytes of KV cache; the pool is this size and in-use bytes never exceed it.</summary>
    public long KvBudgetBytes { get; init; } = 256L << 20;

    /// <summary>Positions per KV block.</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>Most prompt rows prefilled in one forward (longer prompts are prefilled in chunks).</summary>
    public int MaxPrefillRows { get; init; } = 256;

    /// <summary>Which waiting response takes a free slot (the continuous and micro samplers).</summary>
    public ISchedulingPolicy Policy { get; init; } = FifoPolicy.Instance;

    /// <summary>How samples share the slots; every sampler gives the same responses.</summary>
    public SamplerKind Sampler { get; init; } = SamplerKind.Continuous;

    /// <summary>The infinite sampler's length predictor; null: an <see cref="OnlineLengthPredictor"/> kept across calls.</summary>
    public ILengthPredictor? LengthPredictor { get; init; }

    /// <summary>Added to one token's logit before sampling (benchmarks: random weights then end responses at varied lengths).</summary>
    public (int Token, float Bias)? LogitBias { get; init; }

    /// <summary>
    /// The infinite sampler frees a probed sample's KV while it waits and recomputes it (its first k
    /// positions, as extra rows of the step that resumes it) instead of holding it: the waiting
    /// samples then leave the whole budget to the lanes. The recomputed KV is bit-identical to the
    /// decoded one on the CPU (row-independent GEMM, and paged attention gives a query the same bits
    /// whatever other queries share its tile), so completions do not change.
    /// </summary>
    public bool RecomputeProbes { get; init; } = true;
}

/// <summary>A sample the length-aware scheduler resumed: in plan <paramref name="Epoch"/>, lane <paramref name="Lane"/>.</summary>
/// <param name="SequenceId">The sample.</param>
/// <param name="Epoch">Plan it was resumed under (replanned when new samples finish their probe).</param>
/// <param name="Lane">Lane of that plan.</param>
/// <param name="Predicted">Its predicted final length.</param>
/// <param name="Stolen">Taken from another lane by an idle one.</param>
internal sealed record SampleAdmission(long SequenceId, int Epoch, int Lane, double Predicted, bool Stolen);

/// <summary>Counters of the last <see cref="Generator.Generate"/> call.</summary>
internal sealed class GenerationStats
{
    public int DecodeSteps { get; set; }

    public long GeneratedTokens { get; set; }

    public long PrefillTokens { get; set; }

    /// <summary>Positions of probed samples recomputed when they resumed (their KV was freed while they waited).</summary>
    public long RecomputedTokens { get; set; }

    /// <summary>Forwards that prefilled prompts (prompts admitted together share them).</summary>
    public int PrefillForwards { get; set; }

    public double PrefillMs { get; set; }

    public double DecodeMs { get; set; }

    public long PeakKvBytes { get; set; }

    public int CopiesOnWrite { get; set; }

    /// <summary>Most samples decoded in one step.</summary>
    public int MaxConcurrent { get; set; }

    /// <summary>Largest KV the call held or had promised to running samples (blocks in use + reserved): the pool it needs.</summary>
    public long PeakKvCommittedBytes { get; set; }

    /// <summary>Length-aware plans made (infinite sampler).</summary>
    public int Plans { get; set; }

    /// <summary>Most lanes of a plan: samples the budget lets run whole at once (infinite sampler).</summary>
    public int Lanes { get; set; }

    /// <summary>Resumptions of probed samples, in order (infinite sampler).</summary>
    public List<SampleAdmission> Admissions { get; } = [];

    /// <summary>(predicted, true) final length of every sample whose length was predicted.</summary>
    public List<(double Predicted, int Actual)> LengthPredictions { get; } = [];

    /// <summary>Pearson correlation of predicted and true lengths (NaN under two predictions or with no spread).</summary>
    public double LengthCorrelation => Statistics.Pearson(LengthPredictions.Select(p => p.Predicted).ToArray(), LengthPredictions.Select(p => (double)p.Actual).ToArray());
}

/// <summary>
/// Grouped sampling with continuous batching over a paged KV cache (the samplers of Infinite
/// Sampling, methods.md §3: <see cref="SamplerKind"/>). Each prompt's first P-1 tokens
/// are prefilled once into blocks its G responses share; each response then starts by decoding the
/// prompt's last token itself, so it can be admitted whenever a slot frees (token-level
/// interleaving). Admission reserves the worst-case blocks of a response, so the cache never runs
/// out and in-use bytes never exceed the budget. Random numbers are keyed by (seed, sequence id,
/// position): results do not depend on batch composition, slot count or admission order.
/// </summary>
internal sealed class Generator : IDisposable
{
    private const uint SamplingStream = 1;
    private readonly Transformer model;
    private readonly GeneratorOptions options;
    private readonly PagedKvCache cache;
    private readonly InferencePlan plan;
    private readonly int maxBlocks;
    private readonly int prefillRow;
    private readonly ILengthPredictor predictor;
    private readonly DeviceBuffer? logitBias;
    private readonly List<Sample> admitted = [];
    private readonly List<PromptState> prefills = [];
    private readonly bool recomputeProbes;
    private int recomputeRows;
    private float[]? hostHidden;
    private int hiddenRows = -1;

    // Host staging, reused every step.
    private readonly int[] hostTokens, hostPositions, hostSlots, hostRowSeq, hostGather, hostTopK, hostTables, hostSampled;
    private readonly float[] hostUniforms, hostTemps, hostTopP, hostSampleLp, hostPolicyLp;

    public Generator(Transformer model, GeneratorOptions options)
    {
        if (options.MaxSlots < 1)
        {
            throw new EngineException($"generation needs at least one slot, got {options.MaxSlots}");
        }

        if (options.MaxPrefillRows < 1)
        {
            throw new EngineException($"prefill rows per step must be at least 1, got {options.MaxPrefillRows}");
        }

        this.model = model;
        this.options = options;
        ModelConfig cfg = model.Config;
        int blocks = PagedKvCache.BlocksForBudget(cfg, options.KvBudgetBytes, options.BlockSize);
        if (blocks < 1)
        {
            throw new EngineException($"a KV budget of {options.KvBudgetBytes} bytes holds no block of {options.BlockSize} positions");
        }

        cache = new PagedKvCache(model.Acc, cfg, blocks, options.BlockSize);
        maxBlocks = cache.BlocksFor(cfg.MaxPositions);
        prefillRow = options.MaxSlots;
        // Forward rows: a decode step's slots, or prompts' rows prefilled together. Only slots sample.
        int capacity = Math.Max(options.MaxSlots, options.MaxPrefillRows);
        plan = new InferencePlan(model.Acc, cfg, capacity, options.MaxSlots, 2 * options.MaxSlots, maxBlocks);
        hostTokens = new int[capacity];
        hostPositions = new int[capacity];
        hostSlots = new int[capacity];
        hostRowSeq = new int[capacity];
        hostGather = new int[options.MaxSlots];
        hostTopK = new int[options.MaxSlots];
        hostSampled = new int[options.MaxSlots];
        hostTables = new int[2 * options.MaxSlots * maxBlocks];
        hostUniforms = new float[options.MaxSlots];
        hostTemps = new float[options.MaxSlots];
        hostTopP = new float[options.MaxSlots];
        hostSampleLp = new float[options.MaxSlots];
        hostPolicyLp = new float[options.MaxSlots];
        predictor = options.LengthPredictor ?? new OnlineLengthPredictor();
        if (predictor.PrefixTokens < 1)
        {
            throw new EngineException($"the length predictor must see at least one generated token, got k = {predictor.PrefixTokens}");
        }

        // A resumed probe's k positions and its next token must fit one forward.
        recomputeProbes = options.RecomputeProbes && predictor.PrefixTokens + 1 <= plan.Capacity;
        if (options.LogitBias is (int token, float bias))
        {
            if ((uint)token >= (uint)cfg.VocabSize)
            {
                throw new EngineException($"logit bias token {token} is outside the vocabulary [0, {cfg.VocabSize})");
            }

            var host = new float[cfg.VocabSize];
            host[token] = bias;
            logitBias = model.Acc.Allocate(cfg.VocabSize);
            model.Acc.Upload(logitBias.All, host);
        }
    }

    /// <summary>The infinite sampler's length predictor.</summary>
    public ILengthPredictor Predictor => predictor;

    /// <summary>Counters of the last call.</summary>
    public GenerationStats Stats { get; private set; } = new();

    /// <summary>The KV cache (free list, peak bytes) for inspection.</summary>
    public PagedKvCache Cache => cache;

    /// <summary>
    /// Samples <paramref name="g"/> responses to each prompt. Response j of prompt i has sequence
    /// id <c>sequenceIdBase + i * g + j</c>, which (with the seed) keys its random numbers, so every
    /// sampler (<see cref="GeneratorOptions.Sampler"/>) gives the same responses.
    /// </summary>
    /// <param name="prompts">The prompts' token ids.</param>
    /// <param name="g">Responses per prompt.</param>
    /// <param name="sampling">How tokens are sampled and when a response stops.</param>
    /// <param name="sequenceIdBase">The sequence id of the first response.</param>
    /// <param name="onToken">
    /// Called after every decode step with each sampled token as (prompt index, sample index, token id), in
    /// generation order, before the call returns: what streaming reads. It must not call back into the generator.
    /// </param>
    /// <param name="cancellationToken">Checked between decode steps; on cancellation the KV blocks are freed and the call throws.</param>
    public IReadOnlyList<GenerationGroup> Generate(IReadOnlyList<int[]> prompts, int g, SamplingOptions sampling, long sequenceIdBase = 0,
        Action<int, int, int>? onToken = null, CancellationToken cancellationToken = default)
    {
        Validate(prompts, g, sampling);
        using Activity? activity = EngineTelemetry.Source.StartActivity("engine.sampling")?
            .SetTag("engine.prompts", prompts.Count).SetTag("engine.samples_per_prompt", g);
        var stats = new GenerationStats();
        Stats = stats;
        cache.ResetPeak();
        var run = new Rollout(prompts.Select((p, i) => new PromptState(i, p, g)).ToArray(), g, sampling,
            sampling.EosTokenIds ?? model.Config.EosTokenIds, stats, options.MaxSlots);
        foreach (PromptState p in run.Prompts)
        {
            for (int j = 0; j < g; j++)
            {
                run.Fresh.Add(new PendingSample(p.Index, j, sequenceIdBase + (long)p.Index * g + j, p.Tokens.Length));
            }
        }

        if (options.Sampler == SamplerKind.Full)
        {
            CheckFullGroupsFit(run);
        }

        try
        {
            while (run.Fresh.Count > 0 || run.Suspended.Count > 0 || run.Running.Count > 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
                Admit(run);
                stats.MaxConcurrent = Math.Max(stats.MaxConcurrent, run.Running.Count);
                stats.PeakKvCommittedBytes = Math.Max(stats.PeakKvCommittedBytes, (cache.UsedBlocks + run.Reserved) * cache.BlockBytes);
                DecodeStep(run);
                if (onToken is not null)
                {
                    foreach (Sample s in run.Running)
                    {
                        onToken(s.Info.PromptIndex, s.Info.SampleIndex, s.Tokens[^1]);
                    }
                }

                Retire(run);
            }
        }
        catch
        {
            // A cancelled (or failed) call leaves the cache as it found it, so the generator stays usable.
            Abandon(run);
            throw;
        }

        stats.PeakKvBytes = cache.PeakBytes;
        stats.CopiesOnWrite = cache.CopiesOnWrite;
        activity?.SetTag("engine.tokens_generated", stats.GeneratedTokens).SetTag("engine.kv_cache.peak_bytes", stats.PeakKvBytes);
        return run.Prompts.Select(p => new GenerationGroup(p.Index, p.Tokens, p.Results.Select(r => r!).ToArray())).ToArray();
    }

    /// <summary>Blocks free and not promised to a running sample or to a prompt admitted this round.</summary>
    private long Available(Rollout run) => cache.FreeBlocks - run.Reserved - run.PrefixPending;

    /// <summary>Rows of the next decode step: running samples plus the ones admitted this round.</summary>
    private int Rows(Rollout run) => run.Running.Count + admitted.Count;

    /// <summary>New blocks a sample of <paramref name="prompt"/> may take over its whole length.</summary>
    private int FullNeed(PromptState prompt, SamplingOptions sampling) => ChildBlocks(prompt.Tokens.Length, sampling.MaxNewTokens);

    /// <summary>Fills free rows as the sampler decides, prefills the new prompts, starts the admitted samples.</summary>
    private void Admit(Rollout run)
    {
        admitted.Clear();
        prefills.Clear();
        recomputeRows = 0;
        run.PrefixPending = 0;
        switch (options.Sampler)
        {
            case SamplerKind.Full:
                AdmitGroups(run);
                break;
            case SamplerKind.Micro:
                if (run.Running.Count == 0)
                {
                    AdmitFresh(run);
                }

                break;
            case SamplerKind.Continuous:
                AdmitFresh(run);
                break;
            default:
                AdmitLengthAware(run);
                break;
        }

        if (run.Running.Count == 0 && admitted.Count == 0)
        {
            PendingSample next = run.Fresh[0];
            PromptState prompt = run.Prompts[next.PromptIndex];
            int p = prompt.Tokens.Length;
            long blocks = (prompt.Prefix is null && p > 1 ? cache.BlocksFor(p - 1) : 0) + FullNeed(prompt, run.Sampling);
            throw new EngineException($"the KV budget ({options.KvBudgetBytes} bytes, {cache.TotalBlocks} blocks) cannot hold one response to prompt {next.PromptIndex} with its prompt: that needs {blocks} blocks ({blocks * cache.BlockBytes} bytes)");
        }

        if (prefills.Count > 0)
        {
            Prefill(prefills, run.Stats);
        }

        foreach (Sample s in admitted)
        {
            if (s.Kv is null)
            {
                PromptState prompt = s.Prompt;
                s.Kv = prompt.Prefix is null ? PagedKvCache.NewSequence() : cache.Fork(prompt.Prefix);
                if (!s.Probing)
                {
                    ForkedForGood(prompt);
                }
            }

            s.TableRow = run.FreeRows.Pop();
            run.Running.Add(s);
        }
    }

    /// <summary>
    /// A sample of <paramref name="prompt"/> will not fork its prefix again (it forked for the run it
    /// ends in, or ended or kept its KV as a probe): after the last, the prefix's own reference goes.
    /// A probe whose KV is freed while it waits forks again when it resumes.
    /// </summary>
    private void ForkedForGood(PromptState prompt)
    {
        if (--prompt.Forking == 0 && prompt.Prefix is not null)
        {
            cache.Release(prompt.Prefix);
        }
    }

    /// <summary>
    /// Admits the fresh sample at <paramref name="index"/> if its prompt's prefix (when not yet
    /// prefilled), <paramref name="need"/> blocks and <paramref name="headroom"/> more fit.
    /// </summary>
    private bool TryAdmitFresh(Rollout run, int index, int need, long headroom, bool probe)
    {
        PendingSample next = run.Fresh[index];
        PromptState prompt = run.Prompts[next.PromptIndex];
        int p = prompt.Tokens.Length;
        bool newPrefix = prompt.Prefix is null && p > 1;
        int prefixBlocks = newPrefix ? cache.BlocksFor(p - 1) : 0;
        if (Available(run) < prefixBlocks + need + headroom)
        {
            return false;
        }

        run.Fresh.RemoveAt(index);
        if (newPrefix)
        {
            prompt.Prefix = PagedKvCache.NewSequence();
            prefills.Add(prompt);
            run.PrefixPending += prefixBlocks;
        }

        admitted.Add(new Sample(next, prompt, need, prompt.Tokens[^1], p - 1) { Probing = probe });
        run.Reserved += need;
        return true;
    }

    /// <summary>Continuous batching: fresh samples (in the policy's order) while rows and the budget allow.</summary>
    private void AdmitFresh(Rollout run)
    {
        while (Rows(run) < options.MaxSlots && run.Fresh.Count > 0)
        {
            int k = options.Policy.Choose(run.Fresh);
            if (!TryAdmitFresh(run, k, FullNeed(run.Prompts[run.Fresh[k].PromptIndex], run.Sampling), 0, probe: false))
            {
                break;
            }
        }
    }

    /// <summary>Full-group decoding: whole groups only (the fresh list holds each prompt's G samples together, in order).</summary>
    private void AdmitGroups(Rollout run)
    {
        while (run.Fresh.Count > 0 && Rows(run) + run.G <= options.MaxSlots)
        {
            PromptState prompt = run.Prompts[run.Fresh[0].PromptIndex];
            int p = prompt.Tokens.Length;
            long group = (p > 1 ? cache.BlocksFor(p - 1) : 0) + (long)run.G * FullNeed(prompt, run.Sampling);
            if (Available(run) < group)
            {
                return;
            }

            for (int j = 0; j < run.G; j++)
            {
                TryAdmitFresh(run, 0, FullNeed(prompt, run.Sampling), 0, probe: false);
            }
        }
    }

    /// <summary>Full-group decoding cannot start unless G slots and G worst-case samples plus the prompt fit.</summary>
    private void CheckFullGroupsFit(Rollout run)
    {
        long worst = run.Prompts.Max(p => (p.Tokens.Length > 1 ? cache.BlocksFor(p.Tokens.Length - 1) : 0) + (long)run.G * FullNeed(p, run.Sampling));
        if (run.G > options.MaxSlots || worst > cache.TotalBlocks)
        {
            throw new EngineException($"the 'full' sampler decodes all {run.G} samples of a prompt together: that needs {run.G} slots (have {options.MaxSlots}) and {worst * cache.BlockBytes} bytes of KV (budget {options.KvBudgetBytes}); use the micro, continuous or infinite sampler");
        }
    }

    /// <summary>
    /// Infinite Sampling's admission. (1) Probes: a fresh sample is decoded for its first k tokens
    /// while the memory beyond it still holds one whole sample (so a suspended sample can always
    /// resume) and probes hold at most half the pool (the rest is for the lanes); it then waits
    /// with its length predicted, its KV freed (recomputed when it resumes) unless
    /// <see cref="GeneratorOptions.RecomputeProbes"/> is off. (2) The waiting samples are
    /// planned into lanes (<see cref="Plan"/>) and each free lane resumes its shortest-predicted
    /// sample. (3) When nothing runs and no probe fits, a fresh sample runs whole, unpredicted.
    /// </summary>
    private void AdmitLengthAware(Rollout run)
    {
        int k = predictor.PrefixTokens;
        if (k < run.Sampling.MaxNewTokens)
        {
            long probeHeld = run.Suspended.Sum(s => (long)s.Taken) + run.Running.Concat(admitted).Where(s => s.Probing).Sum(s => (long)s.Need);
            while (Rows(run) < options.MaxSlots && run.Fresh.Count > 0)
            {
                PromptState prompt = run.Prompts[run.Fresh[0].PromptIndex];
                int full = FullNeed(prompt, run.Sampling), probe = ChildBlocks(prompt.Tokens.Length, k);
                if (2 * (probeHeld + probe) > cache.TotalBlocks || !TryAdmitFresh(run, 0, probe, full, probe: true))
                {
                    break;
                }

                probeHeld += probe;
            }
        }

        if (run.Suspended.Count > 0 && Rows(run) < options.MaxSlots)
        {
            AdmitPlanned(run);
        }

        if (run.Running.Count == 0 && admitted.Count == 0 && run.Fresh.Count > 0)
        {
            TryAdmitFresh(run, 0, FullNeed(run.Prompts[run.Fresh[0].PromptIndex], run.Sampling), 0, probe: false);
        }
    }

    /// <summary>
    /// Each lane without a running sample resumes the head of its queue (its shortest predicted);
    /// an idle lane with an empty queue steals. When every lane runs and the memory freed since the
    /// plan holds another whole sample, a new lane opens (and steals).
    /// </summary>
    private void AdmitPlanned(Rollout run)
    {
        if (run.PlanStale)
        {
            Plan(run);
        }

        for (int lane = 0; Rows(run) < options.MaxSlots; lane++)
        {
            bool opened = lane == run.Lanes.Count;
            if (opened)
            {
                if (run.Suspended.Count == 0 || Available(run) < run.Suspended.Max(x => FullNeed(x.Prompt, run.Sampling) - x.Taken))
                {
                    return;
                }

                run.Lanes.Add(new Lane());
            }

            Lane l = run.Lanes[lane];
            if (l.Running is not null)
            {
                continue;
            }

            bool stolen = l.Queue.Count == 0 && Steal(run, l);
            if (l.Queue.Count == 0)
            {
                if (opened)
                {
                    run.Lanes.RemoveAt(lane);
                    return;
                }

                continue;
            }

            run.Stats.Lanes = Math.Max(run.Stats.Lanes, run.Lanes.Count);

            Sample next = l.Queue[0];
            int need = FullNeed(next.Prompt, run.Sampling);
            int recompute = next.Kv is null ? RecomputedPositions(next) : 0;
            if (Available(run) < need - next.Taken || Rows(run) + 1 + recomputeRows + recompute > plan.Capacity)
            {
                return;
            }

            recomputeRows += recompute;

            l.Queue.RemoveAt(0);
            run.Suspended.Remove(next);
            run.Reserved += need - next.Taken;
            next.Need = need;
            next.Lane = l;
            l.Running = next;
            run.Stats.Admissions.Add(new SampleAdmission(next.Info.SequenceId, run.PlanEpoch, lane, next.Predicted ?? 0, stolen));
            admitted.Add(next);
        }
    }

    /// <summary>
    /// An idle lane takes the longest queued sample of the lane with the most predicted work left
    /// (one that is running a sample or has two queued), when predictions left the plan unbalanced.
    /// </summary>
    private static bool Steal(Rollout run, Lane thief)
    {
        Lane? victim = null;
        double most = 0;
        foreach (Lane l in run.Lanes)
        {
            if (l.Queue.Count == 0 || (l.Running is null && l.Queue.Count < 2))
            {
                continue;
            }

            double work = l.Queue.Sum(s => s.Remaining);
            if (work > most)
            {
                most = work;
                victim = l;
            }
        }

        if (victim is null)
        {
            return false;
        }

        thief.Queue.Add(victim.Queue[^1]);
        victim.Queue.RemoveAt(victim.Queue.Count - 1);
        return true;
    }

    /// <summary>
    /// Global grouping: predicts every waiting sample's length with the predictor's latest fit,
    /// then assigns the waiting samples to lanes by LPT on their predicted remaining tokens. There is
    /// a lane per running sample (preloaded with its predicted remaining tokens) and one per whole
    /// sample the free memory holds now; each lane's queue is in increasing predicted length (SJF).
    /// Replanned when new samples finish their probe.
    /// </summary>
    private void Plan(Rollout run)
    {
        run.PlanStale = false;
        run.PlanEpoch++;
        run.Stats.Plans++;
        foreach (Sample s in run.Suspended)
        {
            s.Predicted = predictor.Predict(s.Evidence!);
        }

        List<Sample> waiting = run.Suspended.OrderBy(s => s.Info.SequenceId).ToList();
        List<Sample> busy = run.Running.Where(s => !s.Probing).Concat(admitted.Where(s => !s.Probing)).ToList();
        int maxNeed = waiting.Max(s => FullNeed(s.Prompt, run.Sampling) - s.Taken);
        long fit = Math.Max(0, Available(run)) / Math.Max(1, maxNeed);
        int lanes = (int)Math.Min(options.MaxSlots, Math.Min(busy.Count + waiting.Count, busy.Count + Math.Max(fit, busy.Count == 0 ? 1 : 0)));
        lanes = Math.Max(lanes, 1);
        var preload = new double[lanes];
        run.Lanes.Clear();
        for (int i = 0; i < lanes; i++)
        {
            var lane = new Lane();
            if (i < busy.Count)
            {
                lane.Running = busy[i];
                busy[i].Lane = lane;
                preload[i] = busy[i].Remaining;
            }

            run.Lanes.Add(lane);
        }

        // Samples running beyond the lanes (the memory shrank since they started) keep no lane.
        for (int i = lanes; i < busy.Count; i++)
        {
            busy[i].Lane = null;
        }

        int[] assignment = MakespanPartition.Lpt(waiting.Select(s => s.Remaining).ToArray(), lanes, preload);
        for (int j = 0; j < waiting.Count; j++)
        {
            run.Lanes[assignment[j]].Queue.Add(waiting[j]);
        }

        foreach (Lane l in run.Lanes)
        {
            l.Queue.Sort((a, b) => a.Predicted != b.Predicted ? a.Predicted!.Value.CompareTo(b.Predicted!.Value) : a.Info.SequenceId.CompareTo(b.Info.SequenceId));
        }

        run.Stats.Lanes = Math.Max(run.Stats.Lanes, lanes);
    }

    /// <summary>After a decode step: finished samples give back their row and memory; probes that reached k tokens wait.</summary>
    private void Retire(Rollout run)
    {
        List<Sample> running = run.Running;
        for (int i = running.Count - 1; i >= 0; i--)
        {
            Sample s = running[i];
            FinishReason? reason = Finished(s, run.Eos, run.Sampling);
            options.Policy.Observe(s.Info, s.Tokens.Count, reason is not null);
            if (reason is { } why)
            {
                cache.Release(s.Kv!);
                run.Reserved -= s.Need - s.Taken;
                run.FreeRows.Push(s.TableRow);
                s.Prompt.Results[s.Info.SampleIndex] = new GeneratedSequence(s.Info.PromptIndex, s.Info.SampleIndex, s.Info.SequenceId,
                    s.Tokens.ToArray(), s.SampleLp.ToArray(), s.PolicyLp.ToArray(), why);
                running.RemoveAt(i);
                if (s.Lane is not null)
                {
                    s.Lane.Running = null;
                }

                if (s.Probing)
                {
                    ForkedForGood(s.Prompt);
                }

                if (s.Evidence is not null)
                {
                    predictor.Learn(s.Evidence, s.Tokens.Count);
                }

                if (s.Predicted is double predicted)
                {
                    run.Stats.LengthPredictions.Add((predicted, s.Tokens.Count));
                }
            }
            else if (s.Probing && s.Tokens.Count >= predictor.PrefixTokens)
            {
                s.Probing = false;
                run.Reserved -= s.Need - s.Taken;
                s.Need = s.Taken;
                run.FreeRows.Push(s.TableRow);
                s.TableRow = -1;
                running.RemoveAt(i);
                run.Suspended.Add(s);
                run.PlanStale = true;
                if (recomputeProbes)
                {
                    // Waiting holds no KV: the step that resumes it recomputes its positions.
                    cache.Release(s.Kv!);
                    s.Kv = null;
                    s.Need = s.Taken = 0;
                }
                else
                {
                    ForkedForGood(s.Prompt);
                }
            }
        }
    }

    /// <summary>Frees every KV sequence an unfinished call holds (releasing is idempotent).</summary>
    private void Abandon(Rollout run)
    {
        foreach (Sample s in run.Running.Concat(run.Suspended).Concat(run.Lanes.SelectMany(l => l.Queue)).Concat(admitted))
        {
            if (s.Kv is not null)
            {
                cache.Release(s.Kv);
            }
        }

        foreach (PromptState p in run.Prompts)
        {
            if (p.Prefix is not null)
            {
                cache.Release(p.Prefix);
            }
        }

        run.Running.Clear();
        run.Suspended.Clear();
        admitted.Clear();
    }

    public void Dispose()
    {
        logitBias?.Dispose();
        plan.Dispose();
        cache.Dispose();
    }

    /// <summary>New blocks a response may take over <paramref name="newTokens"/> tokens in the worst case: its length minus the prompt blocks it shares whole.</summary>
    private int ChildBlocks(int promptLength, int newTokens)
    {
        int total = Math.Min(promptLength + newTokens, model.Config.MaxPositions);
        int sharedFull = (promptLength - 1) / cache.Shape.BlockSize;
        return cache.BlocksFor(total) - sharedFull;
    }

    private void Validate(IReadOnlyList<int[]> prompts, int g, SamplingOptions sampling)
    {
        sampling.Validate();
        if (g < 1)
        {
            throw new EngineException($"the number of samples per prompt (G) must be at least 1, got {g}");
        }

        if (prompts.Count == 0)
        {
            throw new EngineException("no prompts given");
        }

        ModelConfig cfg = model.Config;
        for (int i = 0; i < prompts.Count; i++)
        {
            int[] p = prompts[i];
            if (p.Length == 0)
            {
                throw new EngineException($"prompt {i} is empty");
            }

            if (p.Length >= cfg.MaxPositions)
            {
                throw new EngineException($"prompt {i} has {p.Length} tokens; the model's context is {cfg.MaxPositions}, leaving no room to generate");
            }

            foreach (int id in p)
            {
                if ((uint)id >= (uint)cfg.VocabSize)
                {
                    throw new EngineException($"prompt {i} holds token id {id}, outside the vocabulary [0, {cfg.VocabSize})");
                }
            }
        }
    }

    /// <summary>
    /// Prefills positions 0..P-2 of each prompt into its prefix sequence: the prompts' rows one after
    /// another, in forwards of up to <see cref="InferencePlan.Capacity"/> rows, each prompt on a block
    /// table row of its own (the rows after the slots').
    /// </summary>
    private void Prefill(List<PromptState> prompts, GenerationStats stats)
    {
        long start = Stopwatch.GetTimestamp();
        int n = 0;
        for (int i = 0; i < prompts.Count; i++)
        {
            PromptState prompt = prompts[i];
            KvSequence prefix = prompt.Prefix!;
            int tableRow = prefillRow + i;
            int total = prompt.Tokens.Length - 1;
            for (int pos = 0; pos < total; pos++)
            {
                hostTokens[n] = prompt.Tokens[pos];
                hostPositions[n] = pos;
                hostSlots[n] = cache.AppendSlot(prefix);
                hostRowSeq[n] = tableRow;
                if (++n == plan.Capacity)
                {
                    WriteTable(tableRow, prefix);
                    PrefillRows(n, stats);
                    n = 0;
                }
            }

            WriteTable(tableRow, prefix);

            stats.PrefillTokens += total;
        }

        if (n > 0)
        {
            PrefillRows(n, stats);
        }

        model.Acc.Synchronize();
        stats.PrefillMs += Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    private void PrefillRows(int n, GenerationStats stats)
    {
        UploadRows(n);
        model.ForwardPaged(plan, n, cache.Binding);
        stats.PrefillForwards++;
    }

    /// <summary>One forward over every running response's next row, then one sampled token each.</summary>
    private void DecodeStep(Rollout run)
    {
        List<Sample> running = run.Running;
        SamplingOptions sampling = run.Sampling;
        GenerationStats stats = run.Stats;
        hiddenRows = -1;
        long start = Stopwatch.GetTimestamp();
        int n = running.Count, rows = 0;
        for (int i = 0; i < n; i++)
        {
            Sample r = running[i];
            int recompute = r.Kv!.Length < r.Position ? RecomputedPositions(r) : 0;
            for (int j = 0; j < recompute; j++)
            {
                StageRow(run, r, rows++, j == 0 ? r.Prompt.Tokens[^1] : r.Tokens[j - 1], r.Position - recompute + j);
            }

            stats.RecomputedTokens += recompute;
            hostGather[i] = rows;
            StageRow(run, r, rows++, r.NextToken, r.Position);
            hostUniforms[i] = Philox.Uniform(sampling.Seed, SamplingStream, (ulong)r.Info.SequenceId, (uint)(r.Position + 1));
            hostTemps[i] = sampling.Temperature;
            hostTopK[i] = sampling.TopK;
            hostTopP[i] = sampling.TopP;
            WriteTable(r.TableRow, r.Kv!);
        }

        UploadRows(rows);
        Accelerator acc = model.Acc;
        acc.Upload(plan.GatherRows.Slice(0, n), hostGather.AsSpan(0, n));
        acc.Upload(plan.Uniforms.Slice(0, n), hostUniforms.AsSpan(0, n));
        acc.Upload(plan.Temperatures.Slice(0, n), hostTemps.AsSpan(0, n));
        acc.Upload(plan.TopK.Slice(0, n), hostTopK.AsSpan(0, n));
        acc.Upload(plan.TopP.Slice(0, n), hostTopP.AsSpan(0, n));
        model.ForwardPaged(plan, rows, cache.Binding);
        model.SampleGathered(plan, n, logitBias?.All ?? default);
        acc.Download(plan.SampledTokens.Slice(0, n), hostSampled.AsSpan(0, n));
        acc.Download(plan.SampleLogProbs.Slice(0, n), hostSampleLp.AsSpan(0, n));
        acc.Download(plan.PolicyLogProbs.Slice(0, n), hostPolicyLp.AsSpan(0, n));
        for (int i = 0; i < n; i++)
        {
            Sample r = running[i];
            r.Tokens.Add(hostSampled[i]);
            r.SampleLp.Add(hostSampleLp[i]);
            r.PolicyLp.Add(hostPolicyLp[i]);
            r.NextToken = hostSampled[i];
            r.Position++;
            if (r.Probing && r.Tokens.Count == predictor.PrefixTokens)
            {
                r.Evidence = Evidence(r, i, n);
            }
        }

        stats.DecodeSteps++;
        stats.GeneratedTokens += n;
        stats.DecodeMs += Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    /// <summary>Positions of a resumed probe whose KV was freed: from the prompt's last token to the one before its next.</summary>
    private static int RecomputedPositions(Sample s) => s.Position - (s.Prompt.Tokens.Length - 1);

    /// <summary>Stages forward row <paramref name="row"/>: <paramref name="token"/> of <paramref name="s"/> at <paramref name="position"/>, its KV slot taken from its reservation.</summary>
    private void StageRow(Rollout run, Sample s, int row, int token, int position)
    {
        int before = cache.FreeBlocks;
        hostTokens[row] = token;
        hostPositions[row] = position;
        hostSlots[row] = cache.AppendSlot(s.Kv!);
        int taken = before - cache.FreeBlocks;
        s.Taken += taken;
        run.Reserved -= taken;
        hostRowSeq[row] = s.TableRow;
    }

    /// <summary>What the length predictor sees of row <paramref name="row"/>'s sample: its first k tokens and the hidden state that produced the k-th.</summary>
    private LengthEvidence Evidence(Sample s, int row, int rows)
    {
        int c = model.Config.Dim;
        if (hiddenRows != rows)
        {
            hostHidden ??= new float[options.MaxSlots * c];
            model.Acc.Download(plan.NormF.Slice(0, (long)rows * c), hostHidden.AsSpan(0, rows * c));
            hiddenRows = rows;
        }

        return new LengthEvidence(s.Info.SequenceId, s.Prompt.Tokens.Length, [.. s.Tokens], [.. s.PolicyLp], hostHidden.AsSpan(row * c, c).ToArray());
    }

    private FinishReason? Finished(Sample r, IReadOnlyList<int> eos, SamplingOptions sampling)
    {
        int last = r.Tokens[^1];
        for (int i = 0; i < eos.Count; i++)
        {
            if (eos[i] == last)
            {
                return FinishReason.EndOfSequence;
            }
        }

        foreach (IReadOnlyList<int> stop in sampling.StopSequences)
        {
            if (EndsWith(r.Tokens, stop))
            {
                return FinishReason.StopSequence;
            }
        }

        bool full = r.Tokens.Count >= sampling.MaxNewTokens || r.Prompt.Tokens.Length + r.Tokens.Count >= model.Config.MaxPositions;
        return full ? FinishReason.Length : null;
    }

    private static bool EndsWith(List<int> tokens, IReadOnlyList<int> suffix)
    {
        if (tokens.Count < suffix.Count)
        {
            return false;
        }

        int offset = tokens.Count - suffix.Count;
        for (int i = 0; i < suffix.Count; i++)
        {
            if (tokens[offset + i] != suffix[i])
            {
                return false;
            }
        }

        return true;
    }

    private void WriteTable(int row, KvSequence seq)
    {
        int baseIndex = row * maxBlocks;
        for (int b = 0; b < seq.Blocks.Count; b++)
        {
            hostTables[baseIndex + b] = seq.Blocks[b];
        }
    }

    private void UploadRows(int n)
    {
        Accelerator acc = model.Acc;
        acc.Upload(plan.Tokens.Slice(0, n), hostTokens.AsSpan(0, n));
        acc.Upload(plan.Positions.Slice(0, n), hostPositions.AsSpan(0, n));
        acc.Upload(plan.Slots.Slice(0, n), hostSlots.AsSpan(0, n));
        acc.Upload(plan.RowSequence.Slice(0, n), hostRowSeq.AsSpan(0, n));
        acc.Upload(plan.BlockTables, hostTables);
    }

    private sealed class PromptState(int index, int[] tokens, int g)
    {
        public int Index { get; } = index;

        public int[] Tokens { get; } = tokens;

        public KvSequence? Prefix { get; set; }

        /// <summary>Samples that will still fork the prefix: the prefix is kept until none is left.</summary>
        public int Forking { get; set; } = g;

        public GeneratedSequence?[] Results { get; } = new GeneratedSequence?[g];
    }

    /// <summary>One response from admission to its end; a probed sample waits between its first k tokens and the rest.</summary>
    private sealed class Sample(PendingSample info, PromptState prompt, int need, int nextToken, int position)
    {
        public PendingSample Info { get; } = info;

        public PromptState Prompt { get; } = prompt;

        public KvSequence? Kv { get; set; }

        /// <summary>Block-table row while running, -1 while waiting.</summary>
        public int TableRow { get; set; } = -1;

        /// <summary>New blocks reserved for it (worst case, or the probe's k tokens while probing).</summary>
        public int Need { get; set; } = need;

        /// <summary>New blocks taken so far (reservation used).</summary>
        public int Taken { get; set; }

        public int NextToken { get; set; } = nextToken;

        public int Position { get; set; } = position;

        /// <summary>Decoding only its first k tokens, to be predicted and planned.</summary>
        public bool Probing { get; set; }

        public LengthEvidence? Evidence { get; set; }

        /// <summary>Predicted final length (generated tokens), once planned.</summary>
        public double? Predicted { get; set; }

        /// <summary>The lane it runs in (length-aware scheduling).</summary>
        public Lane? Lane { get; set; }

        /// <summary>Predicted tokens still to generate (at least 1).</summary>
        public double Remaining => Math.Max(1, (Predicted ?? 0) - Tokens.Count);

        public List<int> Tokens { get; } = [];

        public List<float> SampleLp { get; } = [];

        public List<float> PolicyLp { get; } = [];
    }

    /// <summary>A decode slot's plan: the sample it runs and the ones it runs next, shortest predicted first.</summary>
    private sealed class Lane
    {
        public Sample? Running { get; set; }

        public List<Sample> Queue { get; } = [];
    }

    /// <summary>The state of one <see cref="Generate"/> call.</summary>
    private sealed class Rollout(PromptState[] prompts, int g, SamplingOptions sampling, IReadOnlyList<int> eos, GenerationStats stats, int slots)
    {
        public PromptState[] Prompts { get; } = prompts;

        public int G { get; } = g;

        public SamplingOptions Sampling { get; } = sampling;

        public IReadOnlyList<int> Eos { get; } = eos;

        public GenerationStats Stats { get; } = stats;

        /// <summary>Samples not started, prompt by prompt.</summary>
        public List<PendingSample> Fresh { get; } = [];

        /// <summary>Probed samples waiting to resume.</summary>
        public List<Sample> Suspended { get; } = [];

        public List<Sample> Running { get; } = [];

        public List<Lane> Lanes { get; } = [];

        public bool PlanStale { get; set; }

        public int PlanEpoch { get; set; }

        /// <summary>Block-table rows not in use.</summary>
        public Stack<int> FreeRows { get; } = new(Enumerable.Range(0, slots).Reverse());

        /// <summary>Blocks reserved for running samples and not yet taken.</summary>
        public long Reserved { get; set; }

        /// <summary>Prefix blocks of the prompts admitted this round, taken when they are prefilled.</summary>
        public long PrefixPending { get; set; }
    }
}

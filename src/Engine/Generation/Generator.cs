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

    /// <summary>Which waiting response takes a free slot.</summary>
    public ISchedulingPolicy Policy { get; init; } = FifoPolicy.Instance;
}

/// <summary>Counters of the last <see cref="Generator.Generate"/> call.</summary>
internal sealed class GenerationStats
{
    public int DecodeSteps { get; set; }

    public long GeneratedTokens { get; set; }

    public long PrefillTokens { get; set; }

    /// <summary>Forwards that prefilled prompts (prompts admitted together share them).</summary>
    public int PrefillForwards { get; set; }

    public double PrefillMs { get; set; }

    public double DecodeMs { get; set; }

    public long PeakKvBytes { get; set; }

    public int CopiesOnWrite { get; set; }

    public int MaxConcurrent { get; set; }
}

/// <summary>
/// Grouped sampling with continuous batching over a paged KV cache. Each prompt's first P-1 tokens
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
    }

    /// <summary>Counters of the last call.</summary>
    public GenerationStats Stats { get; private set; } = new();

    /// <summary>The KV cache (free list, peak bytes) for inspection.</summary>
    public PagedKvCache Cache => cache;

    /// <summary>
    /// Samples <paramref name="g"/> responses to each prompt. Response j of prompt i has sequence
    /// id <c>sequenceIdBase + i * g + j</c>, which (with the seed) keys its random numbers.
    /// </summary>
    public IReadOnlyList<GenerationGroup> Generate(IReadOnlyList<int[]> prompts, int g, SamplingOptions sampling, long sequenceIdBase = 0)
    {
        Validate(prompts, g, sampling);
        ModelConfig cfg = model.Config;
        IReadOnlyList<int> eos = sampling.EosTokenIds ?? cfg.EosTokenIds;
        var stats = new GenerationStats();
        Stats = stats;
        var promptStates = prompts.Select((p, i) => new PromptState(i, p, g)).ToArray();
        var pending = new List<PendingSample>();
        foreach (PromptState p in promptStates)
        {
            for (int j = 0; j < g; j++)
            {
                pending.Add(new PendingSample(p.Index, j, sequenceIdBase + (long)p.Index * g + j, p.Tokens.Length));
            }
        }

        var running = new List<Running>();
        var freeRows = new Stack<int>(Enumerable.Range(0, options.MaxSlots).Reverse());
        long reserved = 0;
        var admitted = new List<(PendingSample Sample, PromptState Prompt, int Need)>();
        var prefills = new List<PromptState>();
        while (pending.Count > 0 || running.Count > 0)
        {
            // Admit what fits, then prefill every new prompt in one forward (a row's result does not
            // depend on the rows beside it), then start the admitted responses on their prompts' blocks.
            admitted.Clear();
            prefills.Clear();
            long prefixBlocksPending = 0;
            while (running.Count + admitted.Count < options.MaxSlots && pending.Count > 0)
            {
                int k = options.Policy.Choose(pending);
                PendingSample next = pending[k];
                PromptState prompt = promptStates[next.PromptIndex];
                int p = prompt.Tokens.Length;
                int prefixBlocks = prompt.Prefix is null && p > 1 ? cache.BlocksFor(p - 1) : 0;
                int need = ChildBlocks(p, sampling);
                if (cache.FreeBlocks - reserved - prefixBlocksPending < prefixBlocks + need)
                {
                    if (running.Count == 0 && admitted.Count == 0)
                    {
                        throw new EngineException($"the KV budget ({options.KvBudgetBytes} bytes, {cache.TotalBlocks} blocks) cannot hold a response to prompt {next.PromptIndex} (needs {prefixBlocks + need} blocks)");
                    }

                    break;
                }

                pending.RemoveAt(k);
                if (prompt.Prefix is null && p > 1)
                {
                    prompt.Prefix = PagedKvCache.NewSequence();
                    prefills.Add(prompt);
                    prefixBlocksPending += prefixBlocks;
                }

                admitted.Add((next, prompt, need));
                reserved += need;
            }

            if (prefills.Count > 0)
            {
                Prefill(prefills, stats);
            }

            foreach ((PendingSample next, PromptState prompt, int need) in admitted)
            {
                KvSequence kv = prompt.Prefix is null ? PagedKvCache.NewSequence() : cache.Fork(prompt.Prefix);
                if (++prompt.Admitted == g && prompt.Prefix is not null)
                {
                    cache.Release(prompt.Prefix);
                }

                running.Add(new Running(next, prompt, kv, freeRows.Pop(), need, prompt.Tokens[^1], prompt.Tokens.Length - 1));
            }

            stats.MaxConcurrent = Math.Max(stats.MaxConcurrent, running.Count);
            DecodeStep(running, sampling, stats, ref reserved);
            for (int i = running.Count - 1; i >= 0; i--)
            {
                Running r = running[i];
                FinishReason? reason = Finished(r, eos, sampling);
                options.Policy.Observe(r.Info, r.Tokens.Count, reason is not null);
                if (reason is { } why)
                {
                    cache.Release(r.Kv);
                    reserved -= r.Need - r.Taken;
                    freeRows.Push(r.TableRow);
                    r.Prompt.Results[r.Info.SampleIndex] = new GeneratedSequence(r.Info.PromptIndex, r.Info.SampleIndex, r.Info.SequenceId,
                        r.Tokens.ToArray(), r.SampleLp.ToArray(), r.PolicyLp.ToArray(), why);
                    running.RemoveAt(i);
                }
            }
        }

        stats.PeakKvBytes = cache.PeakBytes;
        stats.CopiesOnWrite = cache.CopiesOnWrite;
        return promptStates.Select(p => new GenerationGroup(p.Index, p.Tokens, p.Results.Select(r => r!).ToArray())).ToArray();
    }

    public void Dispose()
    {
        plan.Dispose();
        cache.Dispose();
    }

    /// <summary>New blocks a response may take in the worst case: its whole length minus the prompt blocks it shares whole.</summary>
    private int ChildBlocks(int promptLength, SamplingOptions sampling)
    {
        int total = Math.Min(promptLength + sampling.MaxNewTokens, model.Config.MaxPositions);
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
    private void DecodeStep(List<Running> running, SamplingOptions sampling, GenerationStats stats, ref long reserved)
    {
        long start = Stopwatch.GetTimestamp();
        int n = running.Count;
        for (int i = 0; i < n; i++)
        {
            Running r = running[i];
            int before = cache.FreeBlocks;
            hostTokens[i] = r.NextToken;
            hostPositions[i] = r.Position;
            hostSlots[i] = cache.AppendSlot(r.Kv);
            int taken = before - cache.FreeBlocks;
            r.Taken += taken;
            reserved -= taken;
            hostRowSeq[i] = r.TableRow;
            hostGather[i] = i;
            hostUniforms[i] = Philox.Uniform(sampling.Seed, SamplingStream, (ulong)r.Info.SequenceId, (uint)(r.Position + 1));
            hostTemps[i] = sampling.Temperature;
            hostTopK[i] = sampling.TopK;
            hostTopP[i] = sampling.TopP;
            WriteTable(r.TableRow, r.Kv);
        }

        UploadRows(n);
        Accelerator acc = model.Acc;
        acc.Upload(plan.GatherRows.Slice(0, n), hostGather.AsSpan(0, n));
        acc.Upload(plan.Uniforms.Slice(0, n), hostUniforms.AsSpan(0, n));
        acc.Upload(plan.Temperatures.Slice(0, n), hostTemps.AsSpan(0, n));
        acc.Upload(plan.TopK.Slice(0, n), hostTopK.AsSpan(0, n));
        acc.Upload(plan.TopP.Slice(0, n), hostTopP.AsSpan(0, n));
        model.ForwardPaged(plan, n, cache.Binding);
        model.SampleGathered(plan, n);
        acc.Download(plan.SampledTokens.Slice(0, n), hostSampled.AsSpan(0, n));
        acc.Download(plan.SampleLogProbs.Slice(0, n), hostSampleLp.AsSpan(0, n));
        acc.Download(plan.PolicyLogProbs.Slice(0, n), hostPolicyLp.AsSpan(0, n));
        for (int i = 0; i < n; i++)
        {
            Running r = running[i];
            r.Tokens.Add(hostSampled[i]);
            r.SampleLp.Add(hostSampleLp[i]);
            r.PolicyLp.Add(hostPolicyLp[i]);
            r.NextToken = hostSampled[i];
            r.Position++;
        }

        stats.DecodeSteps++;
        stats.GeneratedTokens += n;
        stats.DecodeMs += Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    private FinishReason? Finished(Running r, IReadOnlyList<int> eos, SamplingOptions sampling)
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

        public int Admitted { get; set; }

        public GeneratedSequence?[] Results { get; } = new GeneratedSequence?[g];
    }

    private sealed class Running(PendingSample info, PromptState prompt, KvSequence kv, int tableRow, int need, int nextToken, int position)
    {
        public PendingSample Info { get; } = info;

        public PromptState Prompt { get; } = prompt;

        public KvSequence Kv { get; } = kv;

        public int TableRow { get; } = tableRow;

        /// <summary>Worst-case new blocks reserved at admission.</summary>
        public int Need { get; } = need;

        /// <summary>New blocks taken so far (reservation used).</summary>
        public int Taken { get; set; }

        public int NextToken { get; set; } = nextToken;

        public int Position { get; set; } = position;

        public List<int> Tokens { get; } = [];

        public List<float> SampleLp { get; } = [];

        public List<float> PolicyLp { get; } = [];
    }
}

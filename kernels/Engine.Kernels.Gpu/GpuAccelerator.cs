using Engine.Core;

namespace Engine.Kernels.Gpu;

/// <summary>
/// The host side shared by the OpenCL and CUDA backends: both run the same kernels (same names,
/// same parameters, same source per op family, Kernels/*.h behind each backend's prelude), so every op wrapper
/// is written once here against a small launch API, and each backend supplies only what differs:
/// how a kernel is built and looked up, how an argument is passed, how a launch is issued, and
/// device memory. A kernel object is created on first use and kept; a launch writes its arguments
/// through <see cref="KernelArgs"/> (a struct, nothing allocated on the host per launch).
/// </summary>
/// <remarks>
/// Launch geometry is in OpenCL terms throughout: a global size counts work-items (threads) per
/// dimension and is rounded up to whole work-groups of the local size; the CUDA backend turns it
/// into a grid of blocks. "Work-group" in the op files means a CUDA block, "local memory" CUDA
/// shared memory.
/// </remarks>
internal abstract unsafe partial class GpuAccelerator : Accelerator
{
    /// <summary>Upper bound on work-items of the element-wise kernels (they loop over the rest).</summary>
    private const long MaxElementwiseItems = 1L << 20;

    private readonly nint[] kernels = new nint[(int)GpuKernel.Count];

    protected GpuAccelerator()
    {
        normPartial = new Scratch(this, "norm gradient");
        sumPartial = new Scratch(this, "sum of squares");
        attentionDi = new Scratch(this, "attention backward");
        headLogits = new Scratch(this, "LM-head logits");
        samplingValues = new Scratch(this, "sampling");
        CopyStaging = new Scratch(this, "overlapping copy");
    }

    /// <summary>Work-group size of the row and reduction kernels (WG in the sources).</summary>
    internal int Wg { get; init; }

    /// <summary>Rows and columns of a GEMM work-group's tile of C (GEMM_TS in the sources).</summary>
    internal int GemmTile { get; init; }

    /// <summary>Scratch for copies whose source and destination overlap.</summary>
    protected Scratch CopyStaging { get; }

    /// <summary>The ending of the backend's kernel files (".cl", ".cu").</summary>
    protected abstract string SourceExtension { get; }

    /// <summary>The build options of every kernel file but Attention (whose kernels are built per head size).</summary>
    protected abstract string BuildOptions { get; }

    /// <summary>Local (shared) memory a work-group may use, in bytes.</summary>
    protected abstract long LocalMemoryBytes { get; }

    /// <summary>Largest work-group.</summary>
    protected abstract long MaxWorkGroupSize { get; }

    /// <summary>The build options of the attention kernels for head size <paramref name="d"/> and tile <paramref name="tile"/>.</summary>
    protected abstract string AttentionBuildOptions(int d, int tile);

    /// <summary>Builds (or takes from the device's cache) the program of <paramref name="file"/> and returns its kernel <paramref name="name"/>.</summary>
    protected abstract nint LoadKernel(string file, string options, string name);

    /// <summary>Frees a kernel from <see cref="LoadKernel"/> at disposal; nothing by default (CUDA functions belong to their module).</summary>
    protected virtual void ReleaseKernel(nint kernel)
    {
    }

    /// <summary>The device address of a view's buffer (a placeholder for the empty tensor); kernels add the offset.</summary>
    protected abstract ulong Address(Tensor t);

    /// <summary>
    /// Passes argument <paramref name="index"/> of <paramref name="kernel"/>: the low
    /// <paramref name="size"/> bytes (4 or 8) of <paramref name="bits"/>.
    /// </summary>
    protected abstract void SetArgument(nint kernel, string name, int index, ulong bits, int size);

    /// <summary>
    /// Declares <paramref name="bytes"/> of local memory for argument position <paramref name="index"/>.
    /// True when that takes an argument (an OpenCL __local parameter); false when the backend gives
    /// the launch's summed <see cref="KernelArgs.LocalBytes"/> instead (CUDA dynamic shared memory).
    /// </summary>
    protected abstract bool SetLocalArgument(nint kernel, string name, int index, long bytes);

    /// <summary>
    /// Launches <paramref name="args"/>' kernel over <paramref name="dims"/> dimensions of
    /// <c>g0 x g1 x g2</c> work-items (each rounded up to whole work-groups) in work-groups of
    /// <c>l0 x l1 x l2</c>.
    /// </summary>
    protected abstract void Launch(in KernelArgs args, int dims, long g0, long g1, long g2, int l0, int l1, int l2);

    /// <summary>
    /// Work-items along a y or z dimension of <paramref name="rows"/> rows, for the kernels that loop
    /// over the rows beyond it: all of them unless the backend caps the dimension.
    /// </summary>
    protected virtual long GridRows(long rows) => rows;

    /// <summary>
    /// Most blocks a launch lays along a grid's y or z dimension for batches (attention), rows (paged
    /// attention) or row blocks of C (GEMM); calls with more are cut into launches over consecutive
    /// slices of their tensors (each slice computes exactly what it would in one launch). Unlimited
    /// unless the backend caps those dimensions (CUDA: 65535); tests lower it to exercise the cutting
    /// on any device.
    /// </summary>
    internal long GridSliceLimit { get; set; } = long.MaxValue;

    /// <summary>Items (one block each along y or z) per launch for a call over <paramref name="count"/> of them.</summary>
    protected int GridStep(int count) => (int)Math.Clamp(GridSliceLimit, 1, Math.Max(1, count));

    /// <summary>Releases the kernels and scratch buffers (the backend calls it while its queue or context is still alive).</summary>
    protected void ReleaseKernelsAndScratch()
    {
        for (int i = 0; i < kernels.Length; i++)
        {
            if (kernels[i] != 0)
            {
                ReleaseKernel(kernels[i]);
                kernels[i] = 0;
            }
        }

        foreach (AttentionKernelSet set in attentionKernels.Values)
        {
            ReleaseKernel(set.Forward);
            ReleaseKernel(set.Di);
            ReleaseKernel(set.DkDv);
            ReleaseKernel(set.Dq);
        }

        attentionKernels.Clear();
        normPartial.Dispose();
        sumPartial.Dispose();
        attentionDi.Dispose();
        headLogits.Dispose();
        samplingValues.Dispose();
        CopyStaging.Dispose();
    }

    /// <summary>Starts setting the arguments of a kernel (created on first use and kept).</summary>
    protected KernelArgs Args(GpuKernel id)
    {
        nint k = kernels[(int)id];
        if (k == 0)
        {
            k = kernels[(int)id] = LoadKernel(GpuKernels.Family(id) + SourceExtension, BuildOptions, GpuKernels.Name(id));
        }

        return new KernelArgs(this, k, GpuKernels.Name(id));
    }

    /// <summary>A 1-D launch.</summary>
    protected void Run(in KernelArgs args, long global, int local) => Launch(args, 1, global, 1, 1, local, 1, 1);

    /// <summary>A 2-D launch.</summary>
    protected void Run(in KernelArgs args, long global0, long global1, int local0, int local1) =>
        Launch(args, 2, global0, global1, 1, local0, local1, 1);

    /// <summary>A 3-D launch.</summary>
    protected void Run(in KernelArgs args, long global0, long global1, long global2, int local0, int local1, int local2) =>
        Launch(args, 3, global0, global1, global2, local0, local1, local2);

    /// <summary>Work-items for an element-wise kernel over <paramref name="n"/> elements (a grid-stride loop covers the rest).</summary>
    private long ElementwiseItems(long n) => Math.Min(RoundUp(n, Wg), MaxElementwiseItems);

    /// <summary><paramref name="value"/> rounded up to a multiple of <paramref name="multiple"/>.</summary>
    protected static long RoundUp(long value, long multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>
    /// A kernel's arguments, passed in order. A tensor is two arguments: its buffer's device address
    /// (the placeholder when empty) and its element offset (u64). Ints, flags and floats are 4
    /// bytes, longs, offsets and addresses 8 (a 64-bit process).
    /// </summary>
    protected struct KernelArgs
    {
        private readonly GpuAccelerator acc;
        private int index;

        public KernelArgs(GpuAccelerator acc, nint kernel, string name)
        {
            this.acc = acc;
            Kernel = kernel;
            Name = name;
            index = 0;
            LocalBytes = 0;
        }

        /// <summary>The kernel object (a cl_kernel or a CUfunction).</summary>
        public readonly nint Kernel { get; }

        /// <summary>The kernel's name, for errors.</summary>
        public readonly string Name { get; }

        /// <summary>Local memory declared with <see cref="Local"/>, in bytes.</summary>
        public long LocalBytes { readonly get; private set; }

        public KernelArgs Tensor(Tensor t) => Buffer(acc.Address(t), t.IsEmpty ? 0 : t.Offset);

        /// <summary>A buffer and an element offset into it (two arguments).</summary>
        public KernelArgs Buffer(ulong address, long offset) => Address(address).Set((ulong)offset, sizeof(ulong));

        /// <summary>A bare device address (scratch buffers, which the kernels take without an offset).</summary>
        public KernelArgs Address(ulong address) => Set(address, sizeof(nint));

        public KernelArgs Int(int value) => Set((uint)value, sizeof(int));

        public KernelArgs Flag(bool value) => Int(value ? 1 : 0);

        public KernelArgs Long(long value) => Set((ulong)value, sizeof(long));

        public KernelArgs Float(float value) => Set(BitConverter.SingleToUInt32Bits(value), sizeof(float));

        /// <summary>A local (shared) memory buffer of <paramref name="bytes"/> bytes.</summary>
        public KernelArgs Local(long bytes)
        {
            LocalBytes += bytes;
            if (acc.SetLocalArgument(Kernel, Name, index, bytes))
            {
                index++;
            }

            return this;
        }

        private KernelArgs Set(ulong bits, int size)
        {
            acc.SetArgument(Kernel, Name, index++, bits, size);
            return this;
        }
    }

    /// <summary>
    /// A scratch buffer the accelerator keeps for its kernels (reduction partials, LM-head logits,
    /// sampling values): grown on demand, never shrunk, released with the accelerator.
    /// </summary>
    protected sealed class Scratch : IDisposable
    {
        private readonly GpuAccelerator owner;
        private readonly string purpose;

        public Scratch(GpuAccelerator owner, string purpose)
        {
            this.owner = owner;
            this.purpose = purpose;
        }

        /// <summary>The current device address (0 before the first <see cref="Ensure"/>).</summary>
        public ulong Address { get; private set; }

        /// <summary>Its size in bytes.</summary>
        public long Bytes { get; private set; }

        /// <summary>A buffer of at least <paramref name="bytes"/> bytes (contents undefined).</summary>
        public ulong Ensure(long bytes)
        {
            if (bytes <= Bytes)
            {
                return Address;
            }

            Free(inUse: true);
            long size = Math.Max(bytes, 256);
            Address = owner.AllocateScratch(size, $"{size} bytes of {purpose} scratch on {owner.Info.Name}");
            Bytes = size;
            return Address;
        }

        public void Dispose() => Free(inUse: false);

        private void Free(bool inUse)
        {
            if (Address != 0)
            {
                owner.FreeScratch(Address, inUse);
                Address = 0;
                Bytes = 0;
            }
        }
    }

    /// <summary>Allocates <paramref name="bytes"/> bytes of device memory for a <see cref="Scratch"/>; <paramref name="what"/> names it in errors.</summary>
    protected abstract ulong AllocateScratch(long bytes, string what);

    /// <summary>
    /// Frees a <see cref="Scratch"/> buffer; <paramref name="inUse"/> when kernels already queued may
    /// still read it (it is being replaced by a larger one), false at disposal.
    /// </summary>
    protected abstract void FreeScratch(ulong address, bool inUse);
}

/// <summary>
/// Every kernel but the per-head-size attention ones. Both backends have each under the same name
/// in the same family file, except the GEMM variants marked as one backend's own.
/// </summary>
internal enum GpuKernel
{
    Gemm,

    /// <summary>OpenCL only: the register-blocked GEMM for CPU devices.</summary>
    GemmCpu,

    /// <summary>OpenCL only: gemm_cpu's transB form.</summary>
    GemmCpuNT,

    /// <summary>CUDA only: the GEMM on TF32 tensor cores.</summary>
    GemmTf32,
    BiasBackward,
    EmbeddingForward,
    EmbeddingBackward,
    LayerNormForward,
    LayerNormBackwardDx,
    RmsNormForward,
    RmsNormBackwardDx,
    NormWeightPartials,
    NormColumnReduce,
    Rope,
    GeluForward,
    GeluBackward,
    SwiGluForward,
    SwiGluBackward,
    Add,
    Scale,
    TokenLogProbRows,
    SumOfSquaresPartials,
    SumOfSquaresFinish,
    AdamW,
    KvCacheWrite,
    PagedAttention,
    SampleTokens,
    GatherRows,
    PolicyLoss,
    KlLoss,
    EntropyBonus,
    OffPolicyLoss,
    KlPenalty,
    BcLoss,
    Count,
}

/// <summary>Where each <see cref="GpuKernel"/> lives: its op family (the file name without its ending) and its name in it.</summary>
internal static class GpuKernels
{
    private static readonly (string Family, string Name, string? Only)[] Table = Build();

    public static string Family(GpuKernel id) => Table[(int)id].Family;

    public static string Name(GpuKernel id) => Table[(int)id].Name;

    /// <summary>The kernels whose family file ends with <paramref name="extension"/> has them (all but the other backend's own).</summary>
    public static IEnumerable<GpuKernel> In(string extension)
    {
        for (int i = 0; i < (int)GpuKernel.Count; i++)
        {
            string? only = Table[i].Only;
            if (only is null || only == extension)
            {
                yield return (GpuKernel)i;
            }
        }
    }

    private static (string, string, string?)[] Build()
    {
        var t = new (string, string, string?)[(int)GpuKernel.Count];
        t[(int)GpuKernel.Gemm] = ("Gemm", "gemm", null);
        t[(int)GpuKernel.GemmCpu] = ("Gemm", "gemm_cpu", ".cl");
        t[(int)GpuKernel.GemmCpuNT] = ("Gemm", "gemm_cpu_nt", ".cl");
        t[(int)GpuKernel.GemmTf32] = ("Gemm", "gemm_tf32", ".cu");
        t[(int)GpuKernel.BiasBackward] = ("Gemm", "bias_backward", null);
        t[(int)GpuKernel.EmbeddingForward] = ("Embedding", "embedding_forward", null);
        t[(int)GpuKernel.EmbeddingBackward] = ("Embedding", "embedding_backward", null);
        t[(int)GpuKernel.LayerNormForward] = ("Norm", "layernorm_forward", null);
        t[(int)GpuKernel.LayerNormBackwardDx] = ("Norm", "layernorm_backward_dx", null);
        t[(int)GpuKernel.RmsNormForward] = ("Norm", "rmsnorm_forward", null);
        t[(int)GpuKernel.RmsNormBackwardDx] = ("Norm", "rmsnorm_backward_dx", null);
        t[(int)GpuKernel.NormWeightPartials] = ("Norm", "norm_weight_partials", null);
        t[(int)GpuKernel.NormColumnReduce] = ("Norm", "norm_column_reduce", null);
        t[(int)GpuKernel.Rope] = ("Rope", "rope", null);
        t[(int)GpuKernel.GeluForward] = ("Activation", "gelu_forward", null);
        t[(int)GpuKernel.GeluBackward] = ("Activation", "gelu_backward", null);
        t[(int)GpuKernel.SwiGluForward] = ("Activation", "swiglu_forward", null);
        t[(int)GpuKernel.SwiGluBackward] = ("Activation", "swiglu_backward", null);
        t[(int)GpuKernel.Add] = ("Activation", "add", null);
        t[(int)GpuKernel.Scale] = ("Activation", "scale", null);
        t[(int)GpuKernel.TokenLogProbRows] = ("CrossEntropy", "token_logprob_rows", null);
        t[(int)GpuKernel.SumOfSquaresPartials] = ("Optimizer", "sumsq_partials", null);
        t[(int)GpuKernel.SumOfSquaresFinish] = ("Optimizer", "sumsq_finish", null);
        t[(int)GpuKernel.AdamW] = ("Optimizer", "adamw", null);
        t[(int)GpuKernel.KvCacheWrite] = ("KvCache", "kv_cache_write", null);
        t[(int)GpuKernel.PagedAttention] = ("KvCache", "paged_attention", null);
        t[(int)GpuKernel.SampleTokens] = ("Sampling", "sample_tokens", null);
        t[(int)GpuKernel.GatherRows] = ("Sampling", "gather_rows", null);
        t[(int)GpuKernel.PolicyLoss] = ("PolicyLoss", "policy_loss", null);
        t[(int)GpuKernel.KlLoss] = ("PolicyLoss", "kl_loss", null);
        t[(int)GpuKernel.EntropyBonus] = ("PolicyLoss", "entropy_bonus", null);
        t[(int)GpuKernel.OffPolicyLoss] = ("PolicyLoss", "off_policy_loss", null);
        t[(int)GpuKernel.KlPenalty] = ("PolicyLoss", "kl_penalty", null);
        t[(int)GpuKernel.BcLoss] = ("BcLoss", "bc_loss", null);
        return t;
    }
}

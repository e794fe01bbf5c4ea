using System.Globalization;
using System.Runtime.CompilerServices;
using Engine.Core;
using Engine.Kernels.OpenCL.Interop;

namespace Engine.Kernels.OpenCL;

/// <summary>
/// The OpenCL backend: one device, one in-order command queue. Ops enqueue kernels and return;
/// <see cref="Synchronize"/> and downloads wait. Kernels are OpenCL C (1.2) files embedded in this
/// assembly, one per op family as in every backend (Gemm.cl, Norm.cl, Attention.cl ...), compiled
/// once per device and process (see <see cref="ClDeviceContext"/>); this accelerator creates its
/// kernel objects on first use and keeps them, so a launch only sets arguments (from stack locals)
/// and enqueues: nothing is allocated on the host per launch.
/// </summary>
/// <remarks>
/// Not thread-safe, like every accelerator (one thread drives it). Indices that the CPU backend
/// validates on the host (token ids, positions, slots, block ids, row indices, targets) live on
/// the device here; kernels never access memory outside a table for a bad index but mark the
/// affected output with NaN instead of throwing (see each family's notes).
/// </remarks>
internal sealed unsafe partial class ClAccelerator : Accelerator
{
    /// <summary>Upper bound on work-items of the element-wise kernels (they loop over the rest).</summary>
    private const long MaxElementwiseItems = 1L << 20;

    private readonly ClDeviceHandle device;
    private readonly nint queue;
    private readonly nint[] kernels = new nint[(int)ClKernel.Count];
    private readonly nint dummy;
    private readonly string options;
    private readonly ClScratch copyStaging;

    public ClAccelerator(ClDeviceHandle device)
    {
        this.device = device;
        Context = device.Context;
        int code;
        queue = ClNative.CreateCommandQueue(Context.Handle, device.Device, 0, &code);
        ClNative.Check(code, "clCreateCommandQueue", device.Name);

        // Work-group size of the row and reduction kernels: a power of two the device allows, at most 256.
        int wg = 256;
        while (wg > 64 && wg > Context.MaxWorkGroupSize)
        {
            wg /= 2;
        }

        Wg = wg;
        GemmTile = wg >= 256 ? 64 : 32;
        TiledGemm = !device.IsCpu;
        options = string.Create(CultureInfo.InvariantCulture,
            $"-cl-std=CL1.2 -D WG={Wg} -D GEMM_TS={GemmTile} -D GEMM_TK=16 -D GEMM_WPT=4");

        int dummyCode;
        dummy = ClNative.CreateBuffer(Context.Handle, ClNative.MemReadWrite, 64, null, &dummyCode);
        ClNative.Check(dummyCode, "clCreateBuffer", "placeholder for absent operands");
        normPartial = new ClScratch(this, "norm gradient");
        sumPartial = new ClScratch(this, "sum of squares");
        attentionDi = new ClScratch(this, "attention backward");
        headLogits = new ClScratch(this, "LM-head logits");
        samplingValues = new ClScratch(this, "sampling");
        copyStaging = new ClScratch(this, "overlapping copy");
    }

    public override DeviceInfo Info => device.Info;

    /// <summary>The device's shared context (programs, limits).</summary>
    internal ClDeviceContext Context { get; }

    /// <summary>Work-group size of the row and reduction kernels.</summary>
    internal int Wg { get; }

    /// <summary>Rows and columns of a GEMM work-group's tile of C.</summary>
    internal int GemmTile { get; }

    public override void Synchronize() => ClNative.Check(ClNative.Finish(queue), "clFinish", device.Name);

    protected override DeviceBuffer AllocateCore(long length, DType type) => new ClBuffer(this, length, type);

    protected override void UploadCore(Tensor dst, ReadOnlySpan<byte> src)
    {
        fixed (byte* p = src)
        {
            ClNative.Check(ClNative.EnqueueWriteBuffer(queue, Mem(dst), 1, (nuint)(dst.Offset * 4), (nuint)src.Length, p, 0, null, null),
                "clEnqueueWriteBuffer");
        }
    }

    protected override void DownloadCore(Tensor src, Span<byte> dst)
    {
        fixed (byte* p = dst)
        {
            ClNative.Check(ClNative.EnqueueReadBuffer(queue, Mem(src), 1, (nuint)(src.Offset * 4), (nuint)dst.Length, p, 0, null, null),
                "clEnqueueReadBuffer");
        }
    }

    protected override void CopyCore(Tensor dst, Tensor src)
    {
        if (dst.Length == 0)
        {
            return;
        }

        nint from = Mem(src), to = Mem(dst);
        long bytes = dst.Length * 4, srcAt = src.Offset * 4, dstAt = dst.Offset * 4;
        if (from == to && srcAt < dstAt + bytes && dstAt < srcAt + bytes)
        {
            // OpenCL refuses overlapping copies (CL_MEM_COPY_OVERLAP); go through scratch (memmove semantics, as the CPU).
            if (srcAt == dstAt)
            {
                return;
            }

            nint staging = copyStaging.Ensure(bytes);
            CopyBytes(from, srcAt, staging, 0, bytes);
            from = staging;
            srcAt = 0;
        }

        CopyBytes(from, srcAt, to, dstAt, bytes);
    }

    private void CopyBytes(nint from, long fromOffset, nint to, long toOffset, long bytes) =>
        ClNative.Check(ClNative.EnqueueCopyBuffer(queue, from, to, (nuint)fromOffset, (nuint)toOffset, (nuint)bytes, 0, null, null),
            "clEnqueueCopyBuffer");

    protected override void FillCore(Tensor dst, float value)
    {
        if (dst.Length == 0)
        {
            return;
        }

        ClNative.Check(ClNative.EnqueueFillBuffer(queue, Mem(dst), &value, 4, (nuint)(dst.Offset * 4), (nuint)(dst.Length * 4), 0, null, null),
            "clEnqueueFillBuffer");
    }

    protected override void ZeroCore(Tensor dst)
    {
        if (dst.Length > 0)
        {
            ZeroBytes(Mem(dst), dst.Offset * 4, dst.Length * 4);
        }
    }

    /// <summary>Queues a zero fill of <paramref name="bytes"/> bytes (a multiple of 4) at <paramref name="offset"/>.</summary>
    internal void ZeroBytes(nint mem, long offset, long bytes)
    {
        int zero = 0;
        ClNative.Check(ClNative.EnqueueFillBuffer(queue, mem, &zero, 4, (nuint)offset, (nuint)bytes, 0, null, null), "clEnqueueFillBuffer");
    }

    protected override void DisposeCore()
    {
        ClNative.Finish(queue);
        for (int i = 0; i < kernels.Length; i++)
        {
            if (kernels[i] != 0)
            {
                ClNative.ReleaseKernel(kernels[i]);
                kernels[i] = 0;
            }
        }

        foreach (var set in attentionKernels.Values)
        {
            foreach (nint k in set.All)
            {
                ClNative.ReleaseKernel(k);
            }
        }

        attentionKernels.Clear();
        normPartial.Dispose();
        sumPartial.Dispose();
        attentionDi.Dispose();
        headLogits.Dispose();
        samplingValues.Dispose();
        copyStaging.Dispose();
        ClNative.ReleaseMemObject(dummy);
        ClNative.ReleaseCommandQueue(queue);
    }

    // ---- kernels and launches ----

    /// <summary>The cl_mem behind a view (the placeholder for the empty tensor).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal nint Mem(Tensor t) => t.Buffer is ClBuffer b ? b.Mem : dummy;

    /// <summary>Starts setting the arguments of a kernel (created on first use and kept).</summary>
    private KernelArgs Args(ClKernel id)
    {
        nint k = kernels[(int)id];
        if (k == 0)
        {
            k = kernels[(int)id] = CreateKernel(ClKernels.File(id), options, ClKernels.Name(id));
        }

        return new KernelArgs(this, k, ClKernels.Name(id));
    }

    /// <summary>Creates a kernel object from the program of <paramref name="file"/> built with <paramref name="buildOptions"/>.</summary>
    private nint CreateKernel(string file, string buildOptions, string name)
    {
        nint program = Context.Program(file, ClSources.For(file), buildOptions);
        byte[] bytes = System.Text.Encoding.ASCII.GetBytes(name + "\0");
        int code;
        nint kernel;
        fixed (byte* p = bytes)
        {
            kernel = ClNative.CreateKernel(program, p, &code);
        }

        ClNative.Check(code, "clCreateKernel", $"{name} in {file}");
        return kernel;
    }

    /// <summary>Enqueues a 1-D launch; the global size is rounded up to a multiple of the local size.</summary>
    private void Run(in KernelArgs args, long global, int local) => Run(args, 1, global, 1, 1, local, 1, 1);

    /// <summary>Enqueues a 2-D launch.</summary>
    private void Run(in KernelArgs args, long global0, long global1, int local0, int local1) =>
        Run(args, 2, global0, global1, 1, local0, local1, 1);

    /// <summary>Enqueues a 3-D launch.</summary>
    private void Run(in KernelArgs args, long global0, long global1, long global2, int local0, int local1, int local2) =>
        Run(args, 3, global0, global1, global2, local0, local1, local2);

    private void Run(in KernelArgs args, uint dims, long g0, long g1, long g2, int l0, int l1, int l2)
    {
        nuint* global = stackalloc nuint[3];
        nuint* local = stackalloc nuint[3];
        global[0] = (nuint)RoundUp(g0, l0);
        global[1] = (nuint)RoundUp(g1, l1);
        global[2] = (nuint)RoundUp(g2, l2);
        local[0] = (nuint)l0;
        local[1] = (nuint)l1;
        local[2] = (nuint)l2;
        ClNative.Check(ClNative.EnqueueNDRangeKernel(queue, args.Kernel, dims, null, global, local, 0, null, null),
            "clEnqueueNDRangeKernel", args.Name);
    }

    /// <summary>Work-items for an element-wise kernel over <paramref name="n"/> elements (a grid-stride loop covers the rest).</summary>
    private long ElementwiseItems(long n) => Math.Min(RoundUp(n, Wg), MaxElementwiseItems);

    private static long RoundUp(long value, long multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>
    /// Sets a kernel's arguments in order with clSetKernelArg from stack locals. A tensor is two
    /// arguments: its cl_mem (the placeholder when empty) and its element offset (ulong).
    /// </summary>
    private struct KernelArgs
    {
        private readonly ClAccelerator acc;
        private uint index;

        public KernelArgs(ClAccelerator acc, nint kernel, string name)
        {
            this.acc = acc;
            Kernel = kernel;
            Name = name;
            index = 0;
        }

        public readonly nint Kernel { get; }

        public readonly string Name { get; }

        public KernelArgs Tensor(Tensor t) => Buffer(acc.Mem(t), t.IsEmpty ? 0 : t.Offset);

        /// <summary>A buffer and an element offset into it (two arguments).</summary>
        public KernelArgs Buffer(nint mem, long offset)
        {
            ulong off = (ulong)offset;
            Set(&mem, (nuint)sizeof(nint));
            Set(&off, sizeof(ulong));
            return this;
        }

        public KernelArgs Mem(nint mem)
        {
            Set(&mem, (nuint)sizeof(nint));
            return this;
        }

        public KernelArgs Int(int value)
        {
            Set(&value, sizeof(int));
            return this;
        }

        public KernelArgs Flag(bool value) => Int(value ? 1 : 0);

        public KernelArgs Long(long value)
        {
            Set(&value, sizeof(long));
            return this;
        }

        public KernelArgs Float(float value)
        {
            Set(&value, sizeof(float));
            return this;
        }

        /// <summary>A __local buffer of <paramref name="bytes"/> bytes.</summary>
        public KernelArgs Local(long bytes)
        {
            ClNative.Check(ClNative.SetKernelArg(Kernel, index, (nuint)bytes, null), "clSetKernelArg", Name);
            index++;
            return this;
        }

        private void Set(void* value, nuint size)
        {
            int code = ClNative.SetKernelArg(Kernel, index, size, value);
            if (code != ClNative.Success)
            {
                throw new ClException("clSetKernelArg", code, $"{Name} argument {index}");
            }

            index++;
        }
    }
}

/// <summary>Every kernel of the backend but the per-head-size attention ones.</summary>
internal enum ClKernel
{
    Gemm,
    GemmCpu,
    GemmCpuNT,
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
    KlPenalty,
    Count,
}

/// <summary>Where each <see cref="ClKernel"/> lives: its op-family file and its name in it.</summary>
internal static class ClKernels
{
    private static readonly (string File, string Name)[] Table = Build();

    public static string File(ClKernel id) => Table[(int)id].File;

    public static string Name(ClKernel id) => Table[(int)id].Name;

    private static (string, string)[] Build()
    {
        var t = new (string, string)[(int)ClKernel.Count];
        t[(int)ClKernel.Gemm] = ("Gemm.cl", "gemm");
        t[(int)ClKernel.GemmCpu] = ("Gemm.cl", "gemm_cpu");
        t[(int)ClKernel.GemmCpuNT] = ("Gemm.cl", "gemm_cpu_nt");
        t[(int)ClKernel.BiasBackward] = ("Gemm.cl", "bias_backward");
        t[(int)ClKernel.EmbeddingForward] = ("Embedding.cl", "embedding_forward");
        t[(int)ClKernel.EmbeddingBackward] = ("Embedding.cl", "embedding_backward");
        t[(int)ClKernel.LayerNormForward] = ("Norm.cl", "layernorm_forward");
        t[(int)ClKernel.LayerNormBackwardDx] = ("Norm.cl", "layernorm_backward_dx");
        t[(int)ClKernel.RmsNormForward] = ("Norm.cl", "rmsnorm_forward");
        t[(int)ClKernel.RmsNormBackwardDx] = ("Norm.cl", "rmsnorm_backward_dx");
        t[(int)ClKernel.NormWeightPartials] = ("Norm.cl", "norm_weight_partials");
        t[(int)ClKernel.NormColumnReduce] = ("Norm.cl", "norm_column_reduce");
        t[(int)ClKernel.Rope] = ("Rope.cl", "rope");
        t[(int)ClKernel.GeluForward] = ("Activation.cl", "gelu_forward");
        t[(int)ClKernel.GeluBackward] = ("Activation.cl", "gelu_backward");
        t[(int)ClKernel.SwiGluForward] = ("Activation.cl", "swiglu_forward");
        t[(int)ClKernel.SwiGluBackward] = ("Activation.cl", "swiglu_backward");
        t[(int)ClKernel.Add] = ("Activation.cl", "add");
        t[(int)ClKernel.Scale] = ("Activation.cl", "scale");
        t[(int)ClKernel.TokenLogProbRows] = ("CrossEntropy.cl", "token_logprob_rows");
        t[(int)ClKernel.SumOfSquaresPartials] = ("Optimizer.cl", "sumsq_partials");
        t[(int)ClKernel.SumOfSquaresFinish] = ("Optimizer.cl", "sumsq_finish");
        t[(int)ClKernel.AdamW] = ("Optimizer.cl", "adamw");
        t[(int)ClKernel.KvCacheWrite] = ("KvCache.cl", "kv_cache_write");
        t[(int)ClKernel.PagedAttention] = ("KvCache.cl", "paged_attention");
        t[(int)ClKernel.SampleTokens] = ("Sampling.cl", "sample_tokens");
        t[(int)ClKernel.GatherRows] = ("Sampling.cl", "gather_rows");
        t[(int)ClKernel.PolicyLoss] = ("PolicyLoss.cl", "policy_loss");
        t[(int)ClKernel.KlPenalty] = ("PolicyLoss.cl", "kl_penalty");
        return t;
    }
}

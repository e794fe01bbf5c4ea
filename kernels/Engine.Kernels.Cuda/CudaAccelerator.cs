using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Engine.Core;
using Engine.Kernels.Cuda.Interop;

namespace Engine.Kernels.Cuda;

/// <summary>
/// The CUDA backend: one device, one stream. Ops launch kernels on the stream and return;
/// <see cref="Synchronize"/> and downloads wait. Kernels are CUDA C++ files embedded in this
/// assembly, one per op family as in every backend (Gemm.cu, Norm.cu, Attention.cu ...), a
/// kernel-for-kernel port of the OpenCL backend's, compiled by NVRTC once per device and process
/// (see <see cref="CudaDeviceContext"/>). Functions are looked up on first use and kept; a launch
/// writes its arguments into a parameter block allocated once per accelerator, so nothing is
/// allocated on the host per launch.
/// </summary>
/// <remarks>
/// Not thread-safe, like every accelerator (one thread drives it). Works in the device's primary
/// context, made current around each driver call and restored afterwards, so a host application's
/// own CUDA state is left alone; the stream does not synchronise with the legacy default stream.
/// Indices that the CPU backend validates on the host (token ids, positions, slots, block ids, row
/// indices, targets) live on the device here; kernels never access memory outside a table for a
/// bad index but mark the affected output with NaN instead of throwing (as the OpenCL backend).
/// GEMM precision: exact fp32 by default; <c>ENGINE_CUDA_PRECISION=tf32</c> runs every GEMM on
/// TF32 tensor cores (sm_80 and later; ignored on older devices), see <see cref="PrecisionVariable"/>.
/// </remarks>
internal sealed unsafe partial class CudaAccelerator : Accelerator
{
    /// <summary>The environment variable selecting the GEMM precision: <c>fp32</c> (default) or <c>tf32</c>.</summary>
    public const string PrecisionVariable = "ENGINE_CUDA_PRECISION";

    /// <summary>The compiler options every module is built with besides the architecture (the block shapes the kernels assume).</summary>
    public const string BaseOptions = "-DWG=256 -DGEMM_TS=64 -DGEMM_TK=16 -DGEMM_WPT=4";

    /// <summary>Upper bound on threads of the element-wise kernels (they loop over the rest).</summary>
    private const long MaxElementwiseItems = 1L << 20;

    /// <summary>Most kernel parameters of any launch (policy_loss has 31).</summary>
    private const int MaxParams = 48;

    /// <summary>Grid y and z limit of every CUDA device.</summary>
    private const long MaxGridYZ = 65535;

    private readonly CudaDeviceHandle device;
    private readonly nint stream;
    private readonly nint[] functions = new nint[(int)CudaKernel.Count];
    private readonly ulong dummy;
    private readonly CudaScratch copyStaging;

    // One block of native memory: MaxParams 8-byte value slots, then MaxParams pointers to them
    // (the void** cuLaunchKernel reads). The driver copies the values at launch, so the block is
    // reused by every launch.
    private readonly ulong* paramValues;
    private readonly void** paramPointers;

    public CudaAccelerator(CudaDeviceHandle device)
    {
        this.device = device;
        Context = device.Context;
        Tf32Gemm = ReadPrecision() && device.Major >= 8;
        paramValues = (ulong*)NativeMemory.AllocZeroed((nuint)MaxParams, (nuint)(sizeof(ulong) + sizeof(void*)));
        paramPointers = (void**)(paramValues + MaxParams);
        for (int i = 0; i < MaxParams; i++)
        {
            paramPointers[i] = paramValues + i;
        }

        nint created = 0;
        ulong placeholder = 0;
        using (Context.Enter())
        {
            CuNative.Check(CuNative.StreamCreate(&created, CuNative.StreamNonBlocking), "cuStreamCreate", device.Name);
            CuNative.Check(CuNative.MemAlloc(&placeholder, 256), "cuMemAlloc_v2", "placeholder for absent operands");
        }

        stream = created;
        dummy = placeholder;
        Wg = 256;
        GemmTile = 64;
        normPartial = new CudaScratch(this, "norm gradient");
        sumPartial = new CudaScratch(this, "sum of squares");
        attentionDi = new CudaScratch(this, "attention backward");
        headLogits = new CudaScratch(this, "LM-head logits");
        samplingValues = new CudaScratch(this, "sampling");
        copyStaging = new CudaScratch(this, "overlapping copy");
    }

    public override DeviceInfo Info => device.Info;

    /// <summary>The device's shared context (modules, primary context).</summary>
    internal CudaDeviceContext Context { get; }

    /// <summary>Threads of the row and reduction kernels (WG in the sources).</summary>
    internal int Wg { get; }

    /// <summary>Rows and columns of a GEMM block's tile of C.</summary>
    internal int GemmTile { get; }

    /// <summary>
    /// True to run GEMMs on TF32 tensor cores (gemm_tf32), false for exact fp32 (gemm). Set from
    /// <see cref="PrecisionVariable"/> at creation (never on devices before sm_80); tests set it.
    /// </summary>
    internal bool Tf32Gemm { get; set; }

    /// <summary>True when <see cref="PrecisionVariable"/> asks for TF32; throws on a value other than fp32 or tf32.</summary>
    internal static bool ReadPrecision() => ParsePrecision(Environment.GetEnvironmentVariable(PrecisionVariable));

    /// <summary>True for "tf32", false for "fp32" or nothing (case-insensitive); throws naming the variable otherwise.</summary>
    internal static bool ParsePrecision(string? value)
    {
        value = value?.Trim();
        if (string.IsNullOrEmpty(value) || value.Equals("fp32", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        return value.Equals("tf32", StringComparison.OrdinalIgnoreCase)
            ? true
            : throw new EngineException($"{PrecisionVariable}={value} is not a precision: expected fp32 (the default) or tf32");
    }

    public override void Synchronize()
    {
        using (Context.Enter())
        {
            CuNative.Check(CuNative.StreamSynchronize(stream), "cuStreamSynchronize", device.Name);
        }
    }

    protected override DeviceBuffer AllocateCore(long length, DType type) => new CudaBuffer(this, length, type);

    // Copies go through the stream (async copy, then a stream sync) rather than the synchronous
    // cuMemcpyHtoD/DtoH, which run on the legacy default stream and would also wait for a host
    // application's work on it. The wait keeps the blocking semantics of Upload and Download.
    protected override void UploadCore(Tensor dst, ReadOnlySpan<byte> src)
    {
        using (Context.Enter())
        {
            fixed (byte* p = src)
            {
                CuNative.Check(CuNative.MemcpyHtoDAsync(Ptr(dst) + (ulong)(dst.Offset * 4), p, (nuint)src.Length, stream), "cuMemcpyHtoDAsync_v2");
            }

            CuNative.Check(CuNative.StreamSynchronize(stream), "cuStreamSynchronize", device.Name);
        }
    }

    protected override void DownloadCore(Tensor src, Span<byte> dst)
    {
        using (Context.Enter())
        {
            fixed (byte* p = dst)
            {
                CuNative.Check(CuNative.MemcpyDtoHAsync(p, Ptr(src) + (ulong)(src.Offset * 4), (nuint)dst.Length, stream), "cuMemcpyDtoHAsync_v2");
            }

            CuNative.Check(CuNative.StreamSynchronize(stream), "cuStreamSynchronize", device.Name);
        }
    }

    protected override void CopyCore(Tensor dst, Tensor src)
    {
        if (dst.Length == 0)
        {
            return;
        }

        ulong from = Ptr(src) + (ulong)(src.Offset * 4), to = Ptr(dst) + (ulong)(dst.Offset * 4);
        long bytes = dst.Length * 4;
        if (from == to)
        {
            return;
        }

        if (from < to + (ulong)bytes && to < from + (ulong)bytes)
        {
            // cuMemcpy leaves overlapping copies undefined; go through scratch (memmove semantics, as the CPU).
            ulong staging = copyStaging.Ensure(bytes);
            CopyBytes(from, staging, bytes);
            from = staging;
        }

        CopyBytes(from, to, bytes);
    }

    private void CopyBytes(ulong from, ulong to, long bytes)
    {
        using (Context.Enter())
        {
            CuNative.Check(CuNative.MemcpyDtoDAsync(to, from, (nuint)bytes, stream), "cuMemcpyDtoDAsync_v2");
        }
    }

    protected override void FillCore(Tensor dst, float value)
    {
        if (dst.Length == 0)
        {
            return;
        }

        using (Context.Enter())
        {
            CuNative.Check(CuNative.MemsetD32Async(Ptr(dst) + (ulong)(dst.Offset * 4), BitConverter.SingleToUInt32Bits(value), (nuint)dst.Length, stream),
                "cuMemsetD32Async");
        }
    }

    protected override void ZeroCore(Tensor dst)
    {
        if (dst.Length > 0)
        {
            ZeroBytes(Ptr(dst) + (ulong)(dst.Offset * 4), dst.Length * 4);
        }
    }

    /// <summary>Queues a zero fill of <paramref name="bytes"/> bytes at <paramref name="ptr"/>.</summary>
    internal void ZeroBytes(ulong ptr, long bytes)
    {
        using (Context.Enter())
        {
            CuNative.Check(CuNative.MemsetD8Async(ptr, 0, (nuint)bytes, stream), "cuMemsetD8Async");
        }
    }

    protected override void DisposeCore()
    {
        using (Context.Enter())
        {
            CuNative.StreamSynchronize(stream);
            normPartial.Dispose();
            sumPartial.Dispose();
            attentionDi.Dispose();
            headLogits.Dispose();
            samplingValues.Dispose();
            copyStaging.Dispose();
            CuNative.MemFree(dummy);
            CuNative.StreamDestroy(stream);
        }

        attentionKernels.Clear();
        NativeMemory.Free(paramValues);
    }

    // ---- kernels and launches ----

    /// <summary>The device address of a view's buffer (the placeholder for the empty tensor); kernels add the offset.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ulong Ptr(Tensor t) => t.Buffer is CudaBuffer b ? b.Ptr : dummy;

    /// <summary>Starts writing the arguments of a kernel (looked up on first use and kept).</summary>
    private KernelArgs Args(CudaKernel id)
    {
        nint f = functions[(int)id];
        if (f == 0)
        {
            f = functions[(int)id] = LoadFunction(CudaKernels.File(id), BaseOptions, CudaKernels.Name(id));
        }

        return new KernelArgs(this, f, CudaKernels.Name(id));
    }

    /// <summary>A kernel from the module of <paramref name="file"/> compiled with <paramref name="options"/>.</summary>
    private nint LoadFunction(string file, string options, string name)
    {
        nint module = Context.Module(file, CudaSources.For(file), options);
        return Context.Function(module, name, file);
    }

    /// <summary>Launches over a 1-D range; the range is rounded up to whole blocks.</summary>
    private void Run(in KernelArgs args, long global, int local, int sharedBytes = 0) =>
        Run(args, global, 1, 1, local, 1, 1, sharedBytes);

    /// <summary>Launches over a 2-D range.</summary>
    private void Run(in KernelArgs args, long global0, long global1, int local0, int local1) =>
        Run(args, global0, global1, 1, local0, local1, 1, 0);

    /// <summary>
    /// Launches over a 3-D range of threads (as the OpenCL backend's NDRange): the grid is the range
    /// divided by the block, rounded up.
    /// </summary>
    private void Run(in KernelArgs args, long g0, long g1, long g2, int l0, int l1, int l2, int sharedBytes = 0)
    {
        long b0 = (g0 + l0 - 1) / l0, b1 = (g1 + l1 - 1) / l1, b2 = (g2 + l2 - 1) / l2;
        if (b0 == 0 || b1 == 0 || b2 == 0)
        {
            return;
        }

        if (b0 > int.MaxValue || b1 > MaxGridYZ || b2 > MaxGridYZ)
        {
            throw new EngineException(string.Create(CultureInfo.InvariantCulture,
                $"{args.Name}: a grid of ({b0}, {b1}, {b2}) blocks exceeds CUDA's limits (2^31 - 1, 65535, 65535); split the batch"));
        }

        using (Context.Enter())
        {
            CuNative.Check(CuNative.LaunchKernel(args.Function, (uint)b0, (uint)b1, (uint)b2, (uint)l0, (uint)l1, (uint)l2,
                (uint)sharedBytes, stream, paramPointers, null), "cuLaunchKernel", args.Name);
        }
    }

    /// <summary>Threads along a grid dimension of rows (y or z) for the kernels that loop over the rows beyond it.</summary>
    private static long GridRows(long rows) => Math.Min(rows, MaxGridYZ);

    /// <summary>Threads for an element-wise kernel over <paramref name="n"/> elements (a grid-stride loop covers the rest).</summary>
    private long ElementwiseItems(long n) => Math.Min(RoundUp(n, Wg), MaxElementwiseItems);

    private static long RoundUp(long value, long multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>
    /// Writes a kernel's arguments in order into the accelerator's parameter block. A tensor is two
    /// arguments: its buffer's device address (the placeholder when empty) and its element offset
    /// (u64). Every slot is 8 bytes; a 4-byte argument occupies the slot's first 4 bytes, which is
    /// where the driver reads it (little-endian).
    /// </summary>
    private struct KernelArgs
    {
        private readonly CudaAccelerator acc;
        private int index;

        public KernelArgs(CudaAccelerator acc, nint function, string name)
        {
            this.acc = acc;
            Function = function;
            Name = name;
            index = 0;
        }

        public readonly nint Function { get; }

        public readonly string Name { get; }

        public KernelArgs Tensor(Tensor t) => Buffer(acc.Ptr(t), t.IsEmpty ? 0 : t.Offset);

        /// <summary>A buffer and an element offset into it (two arguments).</summary>
        public KernelArgs Buffer(ulong ptr, long offset) => Set(ptr).Set((ulong)offset);

        /// <summary>A bare device pointer (scratch buffers, which the kernels take without an offset).</summary>
        public KernelArgs Ptr(ulong ptr) => Set(ptr);

        public KernelArgs Int(int value) => Set((uint)value);

        public KernelArgs Flag(bool value) => Int(value ? 1 : 0);

        public KernelArgs Long(long value) => Set((ulong)value);

        public KernelArgs Float(float value) => Set(BitConverter.SingleToUInt32Bits(value));

        private KernelArgs Set(ulong value)
        {
            if (index >= MaxParams)
            {
                throw new InvalidOperationException($"{Name} has more than {MaxParams} parameters");
            }

            acc.paramValues[index++] = value;
            return this;
        }
    }
}

/// <summary>Every kernel of the backend but the per-head-size attention ones.</summary>
internal enum CudaKernel
{
    Gemm,
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
    KlPenalty,
    Count,
}

/// <summary>Where each <see cref="CudaKernel"/> lives: its op-family file and its name in it.</summary>
internal static class CudaKernels
{
    private static readonly (string File, string Name)[] Table = Build();

    public static string File(CudaKernel id) => Table[(int)id].File;

    public static string Name(CudaKernel id) => Table[(int)id].Name;

    private static (string, string)[] Build()
    {
        var t = new (string, string)[(int)CudaKernel.Count];
        t[(int)CudaKernel.Gemm] = ("Gemm.cu", "gemm");
        t[(int)CudaKernel.GemmTf32] = ("Gemm.cu", "gemm_tf32");
        t[(int)CudaKernel.BiasBackward] = ("Gemm.cu", "bias_backward");
        t[(int)CudaKernel.EmbeddingForward] = ("Embedding.cu", "embedding_forward");
        t[(int)CudaKernel.EmbeddingBackward] = ("Embedding.cu", "embedding_backward");
        t[(int)CudaKernel.LayerNormForward] = ("Norm.cu", "layernorm_forward");
        t[(int)CudaKernel.LayerNormBackwardDx] = ("Norm.cu", "layernorm_backward_dx");
        t[(int)CudaKernel.RmsNormForward] = ("Norm.cu", "rmsnorm_forward");
        t[(int)CudaKernel.RmsNormBackwardDx] = ("Norm.cu", "rmsnorm_backward_dx");
        t[(int)CudaKernel.NormWeightPartials] = ("Norm.cu", "norm_weight_partials");
        t[(int)CudaKernel.NormColumnReduce] = ("Norm.cu", "norm_column_reduce");
        t[(int)CudaKernel.Rope] = ("Rope.cu", "rope");
        t[(int)CudaKernel.GeluForward] = ("Activation.cu", "gelu_forward");
        t[(int)CudaKernel.GeluBackward] = ("Activation.cu", "gelu_backward");
        t[(int)CudaKernel.SwiGluForward] = ("Activation.cu", "swiglu_forward");
        t[(int)CudaKernel.SwiGluBackward] = ("Activation.cu", "swiglu_backward");
        t[(int)CudaKernel.Add] = ("Activation.cu", "add");
        t[(int)CudaKernel.Scale] = ("Activation.cu", "scale");
        t[(int)CudaKernel.TokenLogProbRows] = ("CrossEntropy.cu", "token_logprob_rows");
        t[(int)CudaKernel.SumOfSquaresPartials] = ("Optimizer.cu", "sumsq_partials");
        t[(int)CudaKernel.SumOfSquaresFinish] = ("Optimizer.cu", "sumsq_finish");
        t[(int)CudaKernel.AdamW] = ("Optimizer.cu", "adamw");
        t[(int)CudaKernel.KvCacheWrite] = ("KvCache.cu", "kv_cache_write");
        t[(int)CudaKernel.PagedAttention] = ("KvCache.cu", "paged_attention");
        t[(int)CudaKernel.SampleTokens] = ("Sampling.cu", "sample_tokens");
        t[(int)CudaKernel.GatherRows] = ("Sampling.cu", "gather_rows");
        t[(int)CudaKernel.PolicyLoss] = ("PolicyLoss.cu", "policy_loss");
        t[(int)CudaKernel.KlPenalty] = ("PolicyLoss.cu", "kl_penalty");
        return t;
    }
}

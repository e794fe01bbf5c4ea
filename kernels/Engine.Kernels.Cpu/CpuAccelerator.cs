using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Engine.Core;

namespace Engine.Kernels.Cpu;

/// <summary>
/// The managed SIMD CPU backend: the embedded default and the reference every other backend is
/// checked against. Ops run synchronously on the calling thread plus the pool's workers.
/// The op families live in files named as in every backend (Gemm.cs, Norm.cs, Attention.cs ...).
/// </summary>
internal sealed unsafe partial class CpuAccelerator : Accelerator
{
    private readonly DeviceInfo info;

    public CpuAccelerator(DeviceInfo info, int threadCount)
    {
        this.info = info;
        Pool = new CpuThreadPool(threadCount);
    }

    /// <summary>Creates a CPU accelerator with the default thread count.</summary>
    public CpuAccelerator() : this(CpuProvider.Describe(), CpuThreadPool.DefaultThreadCount)
    {
    }

    /// <summary>Creates a CPU accelerator with an explicit thread count (tests of determinism use 1 vs many).</summary>
    public CpuAccelerator(int threadCount) : this(CpuProvider.Describe(), threadCount)
    {
    }

    public override DeviceInfo Info => info;

    /// <summary>The worker pool every kernel of this accelerator runs on.</summary>
    public CpuThreadPool Pool { get; }

    public override void Synchronize()
    {
    }

    /// <summary>The float data a view starts at, or null for the empty tensor.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float* F(Tensor t) => t.Buffer is null ? null : (float*)((CpuBuffer)t.Buffer).Pointer + t.Offset;

    /// <summary>The integer data a view starts at, or null for the empty tensor.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int* I(Tensor t) => t.Buffer is null ? null : (int*)((CpuBuffer)t.Buffer).Pointer + t.Offset;

    protected override DeviceBuffer AllocateCore(long length, DType type) => new CpuBuffer(this, length, type);

    protected override void UploadCore(Tensor dst, ReadOnlySpan<byte> src) =>
        src.CopyTo(new Span<byte>(F(dst), src.Length));

    protected override void DownloadCore(Tensor src, Span<byte> dst) =>
        new ReadOnlySpan<byte>(F(src), dst.Length).CopyTo(dst);

    protected override void CopyCore(Tensor dst, Tensor src)
    {
        float* to = F(dst), from = F(src);
        long n = dst.Length;
        if (to + n <= from || from + n <= to)
        {
            RunChunks(n, MemoryChunk, new CopyKernel { Dst = to, Src = from });
        }
        else
        {
            Buffer.MemoryCopy(from, to, n * 4, n * 4); // overlapping views: one memmove
        }
    }

    protected override void FillCore(Tensor dst, float value) =>
        new Span<float>(F(dst), checked((int)dst.Length)).Fill(value);

    protected override void ZeroCore(Tensor dst) => RunChunks(dst.Length, MemoryChunk, new ClearKernel { Dst = F(dst) });

    protected override void DisposeCore() => Pool.Dispose();
}

/// <summary>Copies [start, start + count) of 4-byte elements from <see cref="Src"/> to <see cref="Dst"/> (not overlapping).</summary>
internal unsafe struct CopyKernel : IChunkKernel
{
    public float* Dst; // [n]
    public float* Src; // [n]

    public readonly void Run(long start, long count) =>
        Buffer.MemoryCopy(Src + start, Dst + start, count * 4, count * 4);
}

/// <summary>Sets [start, start + count) of 4-byte elements of <see cref="Dst"/> to zero bits.</summary>
internal unsafe struct ClearKernel : IChunkKernel
{
    public float* Dst; // [n]

    public readonly void Run(long start, long count) => NativeMemory.Clear(Dst + start, (nuint)(count * 4));
}

/// <summary>Provides the single CPU device.</summary>
internal sealed class CpuProvider : IAcceleratorProvider
{
    /// <summary>The name in device specs: <c>cpu</c>, the only device of its provider.</summary>
    public const string ProviderName = "cpu";

    public string Name => ProviderName;

    /// <summary>The reference backend: first in device lists and the default device.</summary>
    public int Precedence => 0;

    /// <summary>Describes this machine's CPU as a device.</summary>
    public static DeviceInfo Describe()
    {
        string isa = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "Vector512"
            : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "Vector256" : "scalar";
        long memory = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        string name = RuntimeInformation.ProcessArchitecture + " CPU";
        return new DeviceInfo(ProviderName, 0, name, memory, Environment.ProcessorCount,
            $"{isa}, {CpuThreadPool.DefaultThreadCount} threads") { IsHostCpu = true, Spec = ProviderName };
    }

    public IReadOnlyList<DeviceInfo> Probe() => [Describe()];

    public Accelerator Create(DeviceInfo device) => new CpuAccelerator(device, CpuThreadPool.DefaultThreadCount);
}

namespace Engine.Core;

/// <summary>
/// One live compute device: memory, copies and the op contract. The model, the sampler and the
/// trainers call these ops and never branch on the backend; every backend (CPU, OpenCL, CUDA)
/// implements the <c>*Core</c> members, and this class checks the arguments once for all of them.
/// </summary>
/// <remarks>
/// Ops are issued in order on one queue; results are visible to later ops without a sync, and
/// to the host after <see cref="Download(Tensor, Span{float})"/> (which waits). Not thread-safe:
/// one thread drives an accelerator at a time.
/// Conventions: row-major; "+=" in a summary means the op accumulates into that operand;
/// dimensions are named as in the model (N rows = B*T tokens, C channels, V vocabulary, H heads,
/// D head size, F feed-forward width).
/// </remarks>
internal abstract partial class Accelerator : IDisposable
{
    private long bytesInUse;
    private long peakBytes;

    /// <summary>The device this accelerator drives.</summary>
    public abstract DeviceInfo Info { get; }

    /// <summary>Bytes of device memory currently allocated through this accelerator.</summary>
    public long BytesInUse => Interlocked.Read(ref bytesInUse);

    /// <summary>Largest value <see cref="BytesInUse"/> has reached.</summary>
    public long PeakBytes => Interlocked.Read(ref peakBytes);

    /// <summary>True once disposed.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>When set, every op's time is recorded here (see <see cref="OpProfiler"/>).</summary>
    public OpProfiler? Profiler { get; set; }

    /// <summary>Starts timing an op (a no-op without a profiler).</summary>
    protected OpScope Profile(string op) => new(this, op);

    /// <summary>Allocates a zero-filled buffer of <paramref name="length"/> elements.</summary>
    public DeviceBuffer Allocate(long length, DType type = DType.F32)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        DeviceBuffer buffer = AllocateCore(Math.Max(length, 1), type);
        long now = Interlocked.Add(ref bytesInUse, buffer.Bytes);
        long peak;
        while (now > (peak = Interlocked.Read(ref peakBytes)) &&
               Interlocked.CompareExchange(ref peakBytes, now, peak) != peak)
        {
        }

        return buffer;
    }

    /// <summary>Copies host floats into a device view of the same length.</summary>
    public void Upload(Tensor dst, ReadOnlySpan<float> src)
    {
        CheckSameLength(dst, src.Length, DType.F32, nameof(dst));
        UploadCore(dst, System.Runtime.InteropServices.MemoryMarshal.AsBytes(src));
    }

    /// <summary>Copies host integers into a device view of the same length.</summary>
    public void Upload(Tensor dst, ReadOnlySpan<int> src)
    {
        CheckSameLength(dst, src.Length, DType.I32, nameof(dst));
        UploadCore(dst, System.Runtime.InteropServices.MemoryMarshal.AsBytes(src));
    }

    /// <summary>Waits for queued work and copies a device view into host floats.</summary>
    public void Download(Tensor src, Span<float> dst)
    {
        CheckSameLength(src, dst.Length, DType.F32, nameof(src));
        DownloadCore(src, System.Runtime.InteropServices.MemoryMarshal.AsBytes(dst));
    }

    /// <summary>Waits for queued work and copies a device view into host integers.</summary>
    public void Download(Tensor src, Span<int> dst)
    {
        CheckSameLength(src, dst.Length, DType.I32, nameof(src));
        DownloadCore(src, System.Runtime.InteropServices.MemoryMarshal.AsBytes(dst));
    }

    /// <summary>Convenience: downloads a whole view into a new host array (tests and tools only).</summary>
    public float[] ToArray(Tensor src)
    {
        var result = new float[src.Length];
        Download(src, result);
        return result;
    }

    /// <summary>Convenience: downloads a whole integer view into a new host array.</summary>
    public int[] ToIntArray(Tensor src)
    {
        var result = new int[src.Length];
        Download(src, result);
        return result;
    }

    /// <summary>Device-to-device copy between views of equal length and type.</summary>
    public void Copy(Tensor dst, Tensor src)
    {
        Check(src, "src");
        CheckSameLength(dst, src.Length, src.Buffer!.Type, nameof(dst));
        using (Profile("Copy"))
        {
            CopyCore(dst, src);
        }
    }

    /// <summary>Sets every element of a float view to <paramref name="value"/>.</summary>
    public void Fill(Tensor dst, float value)
    {
        Check(dst, nameof(dst), DType.F32);
        using (Profile("Fill"))
        {
            FillCore(dst, value);
        }
    }

    /// <summary>Sets every element of a view to zero (any element type).</summary>
    public void Zero(Tensor dst)
    {
        Check(dst, nameof(dst));
        using (Profile("Zero"))
        {
            ZeroCore(dst);
        }
    }

    /// <summary>Blocks until every queued op has finished.</summary>
    public abstract void Synchronize();

    public void Dispose()
    {
        if (IsDisposed)
        {
            return;
        }

        IsDisposed = true;
        DisposeCore();
        GC.SuppressFinalize(this);
    }

    internal void OnReleased(DeviceBuffer buffer) => Interlocked.Add(ref bytesInUse, -buffer.Bytes);

    protected abstract DeviceBuffer AllocateCore(long length, DType type);

    protected abstract void UploadCore(Tensor dst, ReadOnlySpan<byte> src);

    protected abstract void DownloadCore(Tensor src, Span<byte> dst);

    protected abstract void CopyCore(Tensor dst, Tensor src);

    protected abstract void FillCore(Tensor dst, float value);

    protected abstract void ZeroCore(Tensor dst);

    protected virtual void DisposeCore()
    {
    }

    // ---- argument checks shared by every op ----

    /// <summary>Checks that a required operand is present, owned here and of the given type.</summary>
    protected void Check(Tensor t, string name, DType type = DType.F32, long minLength = 0)
    {
        if (t.Buffer is null)
        {
            throw new ArgumentException($"{name} is required", name);
        }

        if (!ReferenceEquals(t.Buffer.Owner, this))
        {
            throw new ArgumentException($"{name} belongs to another accelerator ({t.Buffer.Owner.Info})", name);
        }

        if (t.Buffer.IsDisposed)
        {
            throw new ObjectDisposedException(name, $"{name} was released");
        }

        if (t.Buffer.Type != type)
        {
            throw new ArgumentException($"{name} holds {t.Buffer.Type}, expected {type}", name);
        }

        if (t.Length < minLength)
        {
            throw new ArgumentException($"{name} has {t.Length} elements, needs at least {minLength}", name);
        }
    }

    /// <summary>Checks an optional operand: either empty, or valid as in <see cref="Check"/>.</summary>
    protected void CheckOptional(Tensor t, string name, DType type = DType.F32, long minLength = 0)
    {
        if (!t.IsEmpty)
        {
            Check(t, name, type, minLength);
        }
    }

    private void CheckSameLength(Tensor t, long length, DType type, string name)
    {
        Check(t, name, type);
        if (t.Length != length)
        {
            throw new ArgumentException($"{name} has {t.Length} elements, the host span {length}", name);
        }
    }

    protected static void CheckPositive(long value, string name)
    {
        if (value <= 0)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive");
        }
    }
}

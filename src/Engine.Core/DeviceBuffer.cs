namespace Engine.Core;

/// <summary>Element type of a device buffer.</summary>
internal enum DType
{
    /// <summary>32-bit IEEE float.</summary>
    F32,

    /// <summary>32-bit signed integer (token ids, positions).</summary>
    I32,
}

/// <summary>
/// Memory owned by an accelerator. Orchestration code never reads it directly: it passes
/// <see cref="Tensor"/> views to ops and copies small results back explicitly.
/// </summary>
internal abstract class DeviceBuffer : IDisposable
{
    protected DeviceBuffer(Accelerator owner, long length, DType type)
    {
        Owner = owner;
        Length = length;
        Type = type;
    }

    /// <summary>The accelerator that owns this memory.</summary>
    public Accelerator Owner { get; }

    /// <summary>Number of elements.</summary>
    public long Length { get; }

    /// <summary>Element type.</summary>
    public DType Type { get; }

    /// <summary>Size in bytes.</summary>
    public long Bytes => Length * 4;

    /// <summary>True once the memory has been released.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>A view of the whole buffer.</summary>
    public Tensor All => new(this, 0, Length);

    /// <summary>A view of <paramref name="length"/> elements starting at <paramref name="offset"/>.</summary>
    public Tensor Slice(long offset, long length) => All.Slice(offset, length);

    public void Dispose()
    {
        if (IsDisposed)
        {
            return;
        }

        IsDisposed = true;
        Release();
        Owner.OnReleased(this);
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees the backend memory. Called once.</summary>
    protected abstract void Release();
}

/// <summary>
/// A window of a device buffer: the buffer, an element offset and an element count. Every op
/// takes its operands as tensors; the dimensions are passed beside them (B, T, C, V, H, D).
/// </summary>
internal readonly struct Tensor
{
    public Tensor(DeviceBuffer buffer, long offset, long length)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (offset < 0 || length < 0 || offset + length > buffer.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(length),
                $"view [{offset}, {offset + length}) is outside a buffer of {buffer.Length} elements");
        }

        Buffer = buffer;
        Offset = offset;
        Length = length;
    }

    /// <summary>The buffer viewed; null for the empty tensor (an absent optional operand).</summary>
    public DeviceBuffer? Buffer { get; }

    /// <summary>Offset of the first element in the buffer, in elements.</summary>
    public long Offset { get; }

    /// <summary>Number of elements in the view.</summary>
    public long Length { get; }

    /// <summary>True for the empty tensor used to leave an optional operand out.</summary>
    public bool IsEmpty => Buffer is null;

    /// <summary>A sub-view relative to this view.</summary>
    public Tensor Slice(long offset, long length)
    {
        if (Buffer is null)
        {
            throw new InvalidOperationException("cannot slice an empty tensor");
        }

        if (offset < 0 || length < 0 || offset + length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(length),
                $"slice [{offset}, {offset + length}) is outside a view of {Length} elements");
        }

        return new Tensor(Buffer, Offset + offset, length);
    }

    /// <summary>The sub-view starting at <paramref name="offset"/> to the end of this view.</summary>
    public Tensor Slice(long offset) => Slice(offset, Length - offset);

    public override string ToString() =>
        Buffer is null ? "Tensor(empty)" : $"Tensor({Buffer.Type}, offset {Offset}, length {Length})";
}

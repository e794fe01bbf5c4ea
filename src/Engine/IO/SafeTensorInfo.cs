namespace Engine.IO;

/// <summary>One tensor's entry in a safetensors header, validated.</summary>
internal sealed class SafeTensorInfo
{
    private readonly int[] _shape;

    /// <summary>Creates an entry (the reader validates before constructing).</summary>
    public SafeTensorInfo(string name, SafeTensorsDType dtype, int[] shape, long elementCount, long dataBegin, long dataEnd)
    {
        Name = name;
        DType = dtype;
        _shape = shape;
        ElementCount = elementCount;
        DataBegin = dataBegin;
        DataEnd = dataEnd;
    }

    /// <summary>The tensor's name (e.g. "model.layers.0.mlp.up_proj.weight").</summary>
    public string Name { get; }

    /// <summary>The stored element type.</summary>
    public SafeTensorsDType DType { get; }

    /// <summary>Dimensions, outermost first (row-major). Empty for a scalar.</summary>
    public IReadOnlyList<int> Shape => _shape;

    /// <summary>Product of <see cref="Shape"/> (1 for a scalar, 0 when a dimension is 0).</summary>
    public long ElementCount { get; }

    /// <summary>Start of the data, in bytes from the start of the file's data section.</summary>
    public long DataBegin { get; }

    /// <summary>End (exclusive) of the data, in bytes from the start of the file's data section.</summary>
    public long DataEnd { get; }

    /// <summary>Size of the data in bytes.</summary>
    public long ByteLength => DataEnd - DataBegin;

    /// <summary>A copy of the shape as an array.</summary>
    public int[] ShapeArray() => (int[])_shape.Clone();

    /// <summary>The shape as text, e.g. "[2,3]" (for messages).</summary>
    public string ShapeText => FormatShape(_shape);

    /// <summary>Formats a shape as "[d0,d1,...]".</summary>
    public static string FormatShape(ReadOnlySpan<int> shape) => "[" + string.Join(",", shape.ToArray()) + "]";

    /// <inheritdoc/>
    public override string ToString() => $"{Name} {SafeTensorsDTypes.Name(DType)} {ShapeText}";
}

namespace Engine.IO;

/// <summary>
/// Element types of the safetensors format. Declared in the reference implementation's order
/// (increasing alignment); the writer sorts tensors by this order descending, then by name.
/// Sub-byte types (F4, F6_*) are not supported and are reported as unsupported on read.
/// </summary>
internal enum SafeTensorsDType
{
    /// <summary>"BOOL": one byte, 0 or 1.</summary>
    Bool,

    /// <summary>"U8".</summary>
    U8,

    /// <summary>"I8".</summary>
    I8,

    /// <summary>"F8_E5M2": 8-bit float (read as raw bytes only).</summary>
    F8E5M2,

    /// <summary>"F8_E4M3": 8-bit float (read as raw bytes only).</summary>
    F8E4M3,

    /// <summary>"F8_E8M0": 8-bit exponent-only scale (read as raw bytes only).</summary>
    F8E8M0,

    /// <summary>"I16".</summary>
    I16,

    /// <summary>"U16".</summary>
    U16,

    /// <summary>"F16": IEEE half precision.</summary>
    F16,

    /// <summary>"BF16": bfloat16, the high 16 bits of an IEEE single.</summary>
    BF16,

    /// <summary>"I32".</summary>
    I32,

    /// <summary>"U32".</summary>
    U32,

    /// <summary>"F32".</summary>
    F32,

    /// <summary>"F64".</summary>
    F64,

    /// <summary>"I64".</summary>
    I64,

    /// <summary>"U64".</summary>
    U64,
}

/// <summary>Names and sizes of <see cref="SafeTensorsDType"/> values as spelled in safetensors headers.</summary>
internal static class SafeTensorsDTypes
{
    /// <summary>The header spelling of <paramref name="dtype"/> (e.g. "BF16", "F8_E4M3").</summary>
    public static string Name(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.Bool => "BOOL",
        SafeTensorsDType.U8 => "U8",
        SafeTensorsDType.I8 => "I8",
        SafeTensorsDType.F8E5M2 => "F8_E5M2",
        SafeTensorsDType.F8E4M3 => "F8_E4M3",
        SafeTensorsDType.F8E8M0 => "F8_E8M0",
        SafeTensorsDType.I16 => "I16",
        SafeTensorsDType.U16 => "U16",
        SafeTensorsDType.F16 => "F16",
        SafeTensorsDType.BF16 => "BF16",
        SafeTensorsDType.I32 => "I32",
        SafeTensorsDType.U32 => "U32",
        SafeTensorsDType.F32 => "F32",
        SafeTensorsDType.F64 => "F64",
        SafeTensorsDType.I64 => "I64",
        SafeTensorsDType.U64 => "U64",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>Parses a header spelling (case-sensitive, as the reference implementation).</summary>
    public static bool TryParse(string name, out SafeTensorsDType dtype)
    {
        switch (name)
        {
            case "BOOL": dtype = SafeTensorsDType.Bool; return true;
            case "U8": dtype = SafeTensorsDType.U8; return true;
            case "I8": dtype = SafeTensorsDType.I8; return true;
            case "F8_E5M2": dtype = SafeTensorsDType.F8E5M2; return true;
            case "F8_E4M3": dtype = SafeTensorsDType.F8E4M3; return true;
            case "F8_E8M0": dtype = SafeTensorsDType.F8E8M0; return true;
            case "I16": dtype = SafeTensorsDType.I16; return true;
            case "U16": dtype = SafeTensorsDType.U16; return true;
            case "F16": dtype = SafeTensorsDType.F16; return true;
            case "BF16": dtype = SafeTensorsDType.BF16; return true;
            case "I32": dtype = SafeTensorsDType.I32; return true;
            case "U32": dtype = SafeTensorsDType.U32; return true;
            case "F32": dtype = SafeTensorsDType.F32; return true;
            case "F64": dtype = SafeTensorsDType.F64; return true;
            case "I64": dtype = SafeTensorsDType.I64; return true;
            case "U64": dtype = SafeTensorsDType.U64; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>Bytes per element.</summary>
    public static int Size(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.Bool or SafeTensorsDType.U8 or SafeTensorsDType.I8
            or SafeTensorsDType.F8E5M2 or SafeTensorsDType.F8E4M3 or SafeTensorsDType.F8E8M0 => 1,
        SafeTensorsDType.I16 or SafeTensorsDType.U16 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 => 2,
        SafeTensorsDType.I32 or SafeTensorsDType.U32 or SafeTensorsDType.F32 => 4,
        SafeTensorsDType.F64 or SafeTensorsDType.I64 or SafeTensorsDType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };
}

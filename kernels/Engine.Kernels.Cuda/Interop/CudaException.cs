using Engine.Core;

namespace Engine.Kernels.Cuda.Interop;

/// <summary>
/// A CUDA driver or NVRTC call failed: the message names the call and the error, e.g.
/// <c>cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (2, out of memory): 1048576 bytes on ...</c>.
/// </summary>
public sealed class CudaException : EngineException
{
    /// <summary>Creates the exception for a failed call.</summary>
    /// <param name="function">The function that failed.</param>
    /// <param name="code">The result code it returned (CUresult or nvrtcResult).</param>
    /// <param name="error">The error's name and description as the library gives them.</param>
    /// <param name="context">What the call was doing (a kernel name, a compile log ...), or null.</param>
    public CudaException(string function, int code, string error, string? context = null)
        : base($"{function} failed: {error}{(context is null ? "" : ": " + context)}")
    {
        Function = function;
        Code = code;
    }

    /// <summary>Creates an exception with a message only (no failed call).</summary>
    public CudaException(string message) : base(message)
    {
        Function = "";
    }

    /// <summary>Creates an exception with a message and a cause.</summary>
    public CudaException(string message, Exception innerException) : base(message, innerException)
    {
        Function = "";
    }

    /// <summary>Creates an exception without a message.</summary>
    public CudaException()
    {
        Function = "";
    }

    /// <summary>The function that failed (empty when none did).</summary>
    public string Function { get; }

    /// <summary>The result code it returned (0 when none).</summary>
    public int Code { get; }
}

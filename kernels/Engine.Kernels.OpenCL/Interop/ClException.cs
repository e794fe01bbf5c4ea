using System.Collections.Frozen;
using Engine.Core;

namespace Engine.Kernels.OpenCL.Interop;

/// <summary>An OpenCL call failed: the message names the call and the error (e.g. CL_OUT_OF_RESOURCES).</summary>
public sealed class ClException : EngineException
{
    /// <summary>Creates the exception for a failed call.</summary>
    /// <param name="function">The OpenCL function that failed.</param>
    /// <param name="code">The error code it returned.</param>
    /// <param name="context">What the call was doing (a kernel name, a build log ...), or null.</param>
    public ClException(string function, int code, string? context = null)
        : base($"{function} failed: {ClErrors.Name(code)} ({code}){(context is null ? "" : ": " + context)}")
    {
        Function = function;
        Code = code;
    }

    /// <summary>Creates an exception with a message only (no failed call).</summary>
    public ClException(string message) : base(message)
    {
        Function = "";
    }

    /// <summary>Creates an exception with a message and a cause.</summary>
    public ClException(string message, Exception innerException) : base(message, innerException)
    {
        Function = "";
    }

    /// <summary>Creates an exception without a message.</summary>
    public ClException()
    {
        Function = "";
    }

    /// <summary>The OpenCL function that failed (empty when none did).</summary>
    public string Function { get; }

    /// <summary>The error code it returned (0 when none).</summary>
    public int Code { get; }
}

/// <summary>Names of the OpenCL error codes (cl.h and cl_ext.h), for messages.</summary>
internal static class ClErrors
{
    private static readonly FrozenDictionary<int, string> Names = new Dictionary<int, string>
    {
        [0] = "CL_SUCCESS",
        [-1] = "CL_DEVICE_NOT_FOUND",
        [-2] = "CL_DEVICE_NOT_AVAILABLE",
        [-3] = "CL_COMPILER_NOT_AVAILABLE",
        [-4] = "CL_MEM_OBJECT_ALLOCATION_FAILURE",
        [-5] = "CL_OUT_OF_RESOURCES",
        [-6] = "CL_OUT_OF_HOST_MEMORY",
        [-7] = "CL_PROFILING_INFO_NOT_AVAILABLE",
        [-8] = "CL_MEM_COPY_OVERLAP",
        [-9] = "CL_IMAGE_FORMAT_MISMATCH",
        [-10] = "CL_IMAGE_FORMAT_NOT_SUPPORTED",
        [-11] = "CL_BUILD_PROGRAM_FAILURE",
        [-12] = "CL_MAP_FAILURE",
        [-13] = "CL_MISALIGNED_SUB_BUFFER_OFFSET",
        [-14] = "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST",
        [-15] = "CL_COMPILE_PROGRAM_FAILURE",
        [-16] = "CL_LINKER_NOT_AVAILABLE",
        [-17] = "CL_LINK_PROGRAM_FAILURE",
        [-18] = "CL_DEVICE_PARTITION_FAILED",
        [-19] = "CL_KERNEL_ARG_INFO_NOT_AVAILABLE",
        [-30] = "CL_INVALID_VALUE",
        [-31] = "CL_INVALID_DEVICE_TYPE",
        [-32] = "CL_INVALID_PLATFORM",
        [-33] = "CL_INVALID_DEVICE",
        [-34] = "CL_INVALID_CONTEXT",
        [-35] = "CL_INVALID_QUEUE_PROPERTIES",
        [-36] = "CL_INVALID_COMMAND_QUEUE",
        [-37] = "CL_INVALID_HOST_PTR",
        [-38] = "CL_INVALID_MEM_OBJECT",
        [-39] = "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR",
        [-40] = "CL_INVALID_IMAGE_SIZE",
        [-41] = "CL_INVALID_SAMPLER",
        [-42] = "CL_INVALID_BINARY",
        [-43] = "CL_INVALID_BUILD_OPTIONS",
        [-44] = "CL_INVALID_PROGRAM",
        [-45] = "CL_INVALID_PROGRAM_EXECUTABLE",
        [-46] = "CL_INVALID_KERNEL_NAME",
        [-47] = "CL_INVALID_KERNEL_DEFINITION",
        [-48] = "CL_INVALID_KERNEL",
        [-49] = "CL_INVALID_ARG_INDEX",
        [-50] = "CL_INVALID_ARG_VALUE",
        [-51] = "CL_INVALID_ARG_SIZE",
        [-52] = "CL_INVALID_KERNEL_ARGS",
        [-53] = "CL_INVALID_WORK_DIMENSION",
        [-54] = "CL_INVALID_WORK_GROUP_SIZE",
        [-55] = "CL_INVALID_WORK_ITEM_SIZE",
        [-56] = "CL_INVALID_GLOBAL_OFFSET",
        [-57] = "CL_INVALID_EVENT_WAIT_LIST",
        [-58] = "CL_INVALID_EVENT",
        [-59] = "CL_INVALID_OPERATION",
        [-60] = "CL_INVALID_GL_OBJECT",
        [-61] = "CL_INVALID_BUFFER_SIZE",
        [-62] = "CL_INVALID_MIP_LEVEL",
        [-63] = "CL_INVALID_GLOBAL_WORK_SIZE",
        [-64] = "CL_INVALID_PROPERTY",
        [-65] = "CL_INVALID_IMAGE_DESCRIPTOR",
        [-66] = "CL_INVALID_COMPILER_OPTIONS",
        [-67] = "CL_INVALID_LINKER_OPTIONS",
        [-68] = "CL_INVALID_DEVICE_PARTITION_COUNT",
        [-69] = "CL_INVALID_PIPE_SIZE",
        [-70] = "CL_INVALID_DEVICE_QUEUE",
        [-71] = "CL_INVALID_SPEC_ID",
        [-72] = "CL_MAX_SIZE_RESTRICTION_EXCEEDED",
        [-1001] = "CL_PLATFORM_NOT_FOUND_KHR",
        [-1002] = "CL_INVALID_D3D10_DEVICE_KHR",
        [-1024] = "CL_INVALID_GL_SHAREGROUP_REFERENCE_KHR",
        [-1057] = "CL_DEVICE_PARTITION_FAILED_EXT",
        [-1058] = "CL_INVALID_PARTITION_COUNT_EXT",
        [-1059] = "CL_INVALID_PARTITION_NAME_EXT",
        [-1092] = "CL_EGL_RESOURCE_NOT_ACQUIRED_KHR",
        [-1093] = "CL_INVALID_EGL_OBJECT_KHR",
        [-1094] = "CL_INVALID_ACCELERATOR_INTEL",
        [-1095] = "CL_INVALID_ACCELERATOR_TYPE_INTEL",
        [-1096] = "CL_INVALID_ACCELERATOR_DESCRIPTOR_INTEL",
        [-1097] = "CL_ACCELERATOR_TYPE_NOT_SUPPORTED_INTEL",
        [-1098] = "CL_INVALID_VA_API_MEDIA_ADAPTER_INTEL",
        [-1099] = "CL_INVALID_VA_API_MEDIA_SURFACE_INTEL",
        [-1100] = "CL_VA_API_MEDIA_SURFACE_ALREADY_ACQUIRED_INTEL",
        [-1101] = "CL_VA_API_MEDIA_SURFACE_NOT_ACQUIRED_INTEL",
        [-1102] = "CL_INVALID_COMMAND_BUFFER_KHR",
        [-1103] = "CL_INVALID_SYNC_POINT_WAIT_LIST_KHR",
        [-1104] = "CL_INCOMPATIBLE_COMMAND_QUEUE_KHR",
    }.ToFrozenDictionary();

    /// <summary>The symbolic name of an error code, or "unknown OpenCL error" for codes not in the table.</summary>
    public static string Name(int code) => Names.TryGetValue(code, out string? name) ? name : "unknown OpenCL error";
}

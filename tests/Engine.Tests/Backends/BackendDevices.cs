using System.Reflection;
using Engine.Core;
using Xunit.Sdk;

namespace Engine.Tests.Backends;

/// <summary>
/// The devices the parity suite checks: every non-CPU device of every registered backend
/// (OpenCL now; a CUDA backend registered later is covered without changes here).
/// </summary>
internal static class BackendDevices
{
    /// <summary>The sentinel row used when no device exists (the rows are then skipped, with the reason).</summary>
    public const string None = "none";

    private static readonly Lazy<IReadOnlyList<DeviceInfo>> Found = new(() => global::Engine.Devices.List().Where(d => d.Provider != Engine.Kernels.Cpu.CpuProvider.ProviderName).ToList());

    /// <summary>Non-CPU devices of this machine.</summary>
    public static IReadOnlyList<DeviceInfo> All => Found.Value;

    /// <summary>True when the environment says this is a CI run.</summary>
    public static bool IsCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>Why the parity rows are skipped on this machine.</summary>
    public const string SkipReason =
        "no non-CPU compute device (OpenCL or CUDA) on this machine, so there is no backend to compare with the CPU; " +
        "install PoCL (apt-get install pocl-opencl-icd ocl-icd-libopencl1) to run the parity suite. " +
        "In CI (CI=true) the fact OpenCL_platform_is_present_in_CI fails instead.";
}

/// <summary>
/// Theory data: one row per non-CPU device spec (e.g. <c>opencl:0</c>). Without any such device it
/// yields one sentinel row and skips it, stating why (xunit 2 reports a theory without rows as an
/// error, and has no dynamic skip: the skip text of a data attribute is read from this property).
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class BackendDevicesAttribute : DataAttribute
{
    /// <summary>Every non-CPU device.</summary>
    public BackendDevicesAttribute()
    {
    }

    /// <summary>The devices of one backend only (for backend-specific tests).</summary>
    public BackendDevicesAttribute(string provider) => Provider = provider;

    /// <summary>The provider whose devices are listed, or null for every non-CPU backend.</summary>
    public string? Provider { get; }

    /// <inheritdoc />
    public override string? Skip
    {
        get => Selected().Any() ? null
            : Provider is { } provider ? $"no {provider} device on this machine. " + BackendDevices.SkipReason
            : BackendDevices.SkipReason;
        set => throw new NotSupportedException("the skip reason is decided by the devices present");
    }

    /// <inheritdoc />
    public override IEnumerable<object[]> GetData(MethodInfo testMethod)
    {
        var devices = Selected().ToList();
        if (devices.Count == 0)
        {
            yield return [BackendDevices.None];
            yield break;
        }

        foreach (DeviceInfo device in devices)
        {
            yield return [device.Spec];
        }
    }

    private IEnumerable<DeviceInfo> Selected() => BackendDevices.All.Where(d => Provider is null || d.Provider == Provider);
}

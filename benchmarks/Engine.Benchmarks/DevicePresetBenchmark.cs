using BenchmarkDotNet.Attributes;

namespace Engine.Benchmarks;

/// <summary>
/// The two parameters of every model-level suite: the backend (<see cref="BenchmarkDevices"/>) and
/// the model preset (<see cref="Presets"/>, restricted by <c>ENGINE_BENCH_PRESETS</c>).
/// </summary>
public abstract class DevicePresetBenchmark
{
    /// <summary>Device spec: cpu, opencl:0 ...</summary>
    [ParamsSource(nameof(DeviceSpecs))]
    public string Device { get; set; } = "cpu";

    /// <summary>Devices to run on.</summary>
    public static IEnumerable<string> DeviceSpecs => BenchmarkDevices.Specs;

    /// <summary>Model preset.</summary>
    [ParamsSource(nameof(PresetNames))]
    public string Preset { get; set; } = "tiny";

    /// <summary>Presets to run.</summary>
    public static IEnumerable<string> PresetNames => Presets.Selected;
}

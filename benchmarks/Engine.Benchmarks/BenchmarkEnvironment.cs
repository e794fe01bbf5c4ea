namespace Engine.Benchmarks;

/// <summary>Reads the environment variables that narrow what the suites run (devices, presets).</summary>
internal static class BenchmarkEnvironment
{
    /// <summary>The comma-separated values of <paramref name="variable"/>, or null when it is unset or blank.</summary>
    public static string[]? List(string variable)
    {
        string? value = Environment.GetEnvironmentVariable(variable);
        return string.IsNullOrWhiteSpace(value)
            ? null
            : value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }
}

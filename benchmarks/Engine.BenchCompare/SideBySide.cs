using System.Text.Json;
using System.Text.Json.Serialization;

namespace Engine.BenchCompare;

/// <summary>
/// A PyTorch measurement to set beside an engine benchmark of the same run: one line of the
/// <c>pytorch.jsonl</c> that <c>Engine.Benchmarks pytorch</c> writes.
/// </summary>
/// <param name="Label">What is compared, e.g. "GEMM NN n=512" or "train step tiny".</param>
/// <param name="Type">Engine benchmark class (no namespace).</param>
/// <param name="Method">Engine benchmark method.</param>
/// <param name="Parameters">Parameter values the engine benchmark must have (others may take any value).</param>
/// <param name="Unit">Throughput unit, e.g. "GFLOPS" or "tokens/s".</param>
/// <param name="Work">Work per engine invocation in the unit's numerator (floating-point operations, tokens).</param>
/// <param name="Scale">Divides work per second to give the unit (1e9 for GFLOPS, 1 for tokens/s).</param>
/// <param name="PyTorch">PyTorch's throughput in the unit.</param>
public sealed record PyTorchReference(string Label, string Type, string Method, IReadOnlyDictionary<string, string> Parameters, string Unit,
    double Work, double Scale, [property: JsonPropertyName("pytorch")] double PyTorch)
{
    /// <summary>Serialiser settings of the file (camelCase properties).</summary>
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>Reads a JSON-lines file of references (blank lines skipped).</summary>
    public static IReadOnlyList<PyTorchReference> Load(string path) =>
        File.ReadAllLines(path).Where(l => !string.IsNullOrWhiteSpace(l))
            .Select(l => JsonSerializer.Deserialize<PyTorchReference>(l, Json) ?? throw new InvalidDataException($"{path}: null line"))
            .ToList();

    /// <summary>True when <paramref name="result"/> is the engine benchmark this reference describes.</summary>
    public bool Matches(BenchmarkResult result) =>
        result.Type == Type && result.Method == Method &&
        Parameters.All(p => result.Parameters.TryGetValue(p.Key, out string? v) && v == p.Value);
}

/// <summary>One engine-vs-PyTorch line of the report.</summary>
/// <param name="Reference">The PyTorch measurement.</param>
/// <param name="Engine">The engine's throughput in the same unit, or null when its benchmark did not run.</param>
public sealed record SideBySideRow(PyTorchReference Reference, double? Engine)
{
    /// <summary>engine / PyTorch throughput: above 1 means the engine is faster.</summary>
    public double? Ratio => Engine / Reference.PyTorch;

    /// <summary>Pairs every reference with the engine benchmark of <paramref name="current"/> it names.</summary>
    public static IReadOnlyList<SideBySideRow> Match(IReadOnlyList<PyTorchReference> references, IReadOnlyList<BenchmarkResult> current) =>
        references.Select(r =>
        {
            BenchmarkResult? match = current.FirstOrDefault(c => c.Succeeded && r.Matches(c));
            return new SideBySideRow(r, match is null ? null : r.Work / (match.MedianNs!.Value * 1e-9) / r.Scale);
        }).ToList();
}

/// <summary>
/// How much slower the machine itself ran one run than another: the geometric mean, over the PyTorch
/// references measured in both (matched by label and unit), of PyTorch's time ratio (baseline
/// throughput / current throughput). Shared machines drift by 10-30% between runs for everything
/// that runs on them; PyTorch's code did not change, so its drift is the machine's.
/// </summary>
/// <param name="Factor">Above 1: the current run's machine was slower.</param>
/// <param name="References">References the factor was taken over.</param>
public sealed record MachineDrift(double Factor, int References)
{
    /// <summary>The drift between two reference files; null when they share no reference.</summary>
    public static MachineDrift? Between(IReadOnlyList<PyTorchReference> baseline, IReadOnlyList<PyTorchReference> current)
    {
        double sum = 0;
        int n = 0;
        foreach (PyTorchReference now in current)
        {
            PyTorchReference? then = baseline.FirstOrDefault(b => b.Label == now.Label && b.Unit == now.Unit);
            if (then is not null && then.PyTorch > 0 && now.PyTorch > 0)
            {
                sum += Math.Log(then.PyTorch / now.PyTorch);
                n++;
            }
        }

        return n == 0 ? null : new MachineDrift(Math.Exp(sum / n), n);
    }
}

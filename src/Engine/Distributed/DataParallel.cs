using System.Diagnostics;
using System.Numerics.Tensors;
using Engine.Core;
using Engine.Model;

namespace Engine.Distributed;

/// <summary>
/// How a run is spread over processes: <see cref="None"/> (one process) or <see cref="Mpi"/> (one rank per
/// process, started by <c>mpiexec</c>; every rank holds the whole model).
/// </summary>
public enum DistributedMode
{
    /// <summary>One process.</summary>
    None,

    /// <summary>Data parallelism over MPI's world communicator (MPICH's <c>libmpich.so.12</c>).</summary>
    Mpi,
}

/// <summary>
/// Running totals of the gradient all-reduce: <paramref name="Bytes"/> of gradient (the vector length, not the
/// wire traffic), <paramref name="Seconds"/> in the transfer once every rank had arrived (staging copies
/// included) and <paramref name="WaitSeconds"/> waiting for the other ranks to arrive (their load imbalance,
/// kept apart from the transfer the cost model is about).
/// </summary>
internal readonly record struct AllReduceTotals(long Bytes, double Seconds, double WaitSeconds)
{
    public static AllReduceTotals operator +(AllReduceTotals a, AllReduceTotals b) => new(a.Bytes + b.Bytes, a.Seconds + b.Seconds, a.WaitSeconds + b.WaitSeconds);

    public static AllReduceTotals operator -(AllReduceTotals a, AllReduceTotals b) => new(a.Bytes - b.Bytes, a.Seconds - b.Seconds, a.WaitSeconds - b.WaitSeconds);
}

/// <summary>
/// The data-parallel side of a trainer: which share of a batch this rank takes, the gradient all-reduce
/// (in buckets over the flat gradient buffer, at one point: after the backward and before the
/// optimizer step, so the gradient norm, the clip and the non-finite guard see the summed gradient),
/// and the small collectives for metrics. Every rank then applies the same update to the same weights.
/// </summary>
internal sealed class DataParallel
{
    /// <summary>Floats per all-reduce bucket (4 MiB): one host staging buffer of this size, reused.</summary>
    public const int DefaultBucketFloats = 1 << 20;

    private readonly float[] staging;

    public DataParallel(ICommunicator communicator, int bucketFloats = DefaultBucketFloats)
    {
        Communicator = communicator;
        staging = new float[bucketFloats];
    }

    public ICommunicator Communicator { get; }

    public int Rank => Communicator.Rank;

    public int Size => Communicator.Size;

    /// <summary>What the gradient all-reduce has cost this rank so far; a step's share is the difference of two readings.</summary>
    public AllReduceTotals Totals { get; private set; }

    /// <summary>This rank's contiguous share [From, To) of <paramref name="count"/> items.</summary>
    public (int From, int To) Share(int count) => Collectives.Share(count, Size, Rank);

    /// <summary>
    /// Replaces the model's gradients by the sum over ranks of <paramref name="weight"/> times each rank's
    /// gradients (the weight turns a rank's mean over its own tokens into its part of the mean over all).
    /// </summary>
    public void AllReduceGradients(Transformer model, float weight = 1f)
    {
        long arrived = Stopwatch.GetTimestamp();
        Span<long> everyone = [1];
        Collectives.AllReduceSum(Communicator, everyone);
        double waited = Stopwatch.GetElapsedTime(arrived).TotalSeconds;
        long start = Stopwatch.GetTimestamp();
        Accelerator acc = model.Acc;
        DeviceBuffer grads = model.Grads!;
        long total = model.Layout.TotalLength;
        for (long offset = 0; offset < total; offset += staging.Length)
        {
            int length = (int)Math.Min(staging.Length, total - offset);
            Span<float> bucket = staging.AsSpan(0, length);
            Core.Tensor slice = grads.Slice(offset, length);
            acc.Download(slice, bucket);
            if (weight != 1f)
            {
                TensorPrimitives.Multiply(bucket, weight, bucket);
            }

            Collectives.AllReduceSum(Communicator, bucket);
            acc.Upload(slice, bucket);
        }

        Totals += new AllReduceTotals(total * sizeof(float), Stopwatch.GetElapsedTime(start).TotalSeconds, waited);
    }

    /// <summary>The element-wise sum of <paramref name="values"/> over ranks (a new array).</summary>
    public double[] Sum(ReadOnlySpan<double> values)
    {
        double[] result = values.ToArray();
        Collectives.AllReduceSum<double>(Communicator, result);
        return result;
    }

    /// <summary>Every rank's bytes, by rank.</summary>
    public byte[][] AllGather(byte[] mine) => Collectives.AllGather(Communicator, mine);

    /// <summary>
    /// The device a rank opens: "cuda" or "opencl" without an index becomes the GPU of the rank's index on its
    /// machine (MPICH's MPI_LOCALRANKID), so one GPU per rank needs no per-rank settings; anything else is kept.
    /// </summary>
    public static string? DeviceOfRank(string? device, DataParallel? parallel) =>
        parallel is not null && device is "cuda" or "opencl"
            && int.TryParse(Environment.GetEnvironmentVariable("MPI_LOCALRANKID"), System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out int local)
            ? $"{device}:{local}"
            : device;

    /// <summary>A SHA-256 of the settings (JSON) and the model's parameters, to compare ranks at the start.</summary>
    public static byte[] Fingerprint(System.Text.Json.Nodes.JsonNode settings, Transformer model)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        hash.AppendData(System.Text.Encoding.UTF8.GetBytes(settings.ToJsonString()));
        hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(model.Acc.ToArray(model.Params.All).AsSpan()));
        return hash.GetHashAndReset();
    }

    /// <summary>
    /// Refuses to start when any rank's configuration or starting weights differ from rank 0's:
    /// <paramref name="fingerprint"/> is a hash of both; the same exception on every rank.
    /// </summary>
    public void RequireSameRun(byte[] fingerprint, string what)
    {
        int[] differing = Collectives.RanksDifferingFromRoot(Communicator, fingerprint);
        if (differing.Length > 0)
        {
            throw new EngineException(
                $"rank{(differing.Length > 1 ? "s" : "")} {string.Join(", ", differing)} of {Size} started with {what} different from rank 0's: " +
                "every rank must get the same settings and starting checkpoint");
        }
    }
}

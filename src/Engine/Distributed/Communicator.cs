using Engine.Core;

namespace Engine.Distributed;

/// <summary>
/// The point-to-point primitives the data-parallel collectives are built from (<see cref="Collectives"/>):
/// a rank, a world size, a combined send-and-receive with a neighbour, and an abort that stops every rank.
/// Collectives are written on top of these in a fixed order, so a run with a fixed number of ranks
/// sums its gradients identically every time, whatever the MPI library's own all-reduce would do.
/// </summary>
internal interface ICommunicator : IDisposable
{
    /// <summary>This process's rank, 0 .. <see cref="Size"/> - 1.</summary>
    int Rank { get; }

    /// <summary>Ranks in the job.</summary>
    int Size { get; }

    /// <summary>
    /// Sends <paramref name="send"/> to rank <paramref name="destination"/> and receives exactly
    /// <paramref name="receive"/>.Length bytes from rank <paramref name="source"/>, without deadlocking when
    /// the two ranks exchange with each other at the same time. Either span may be empty.
    /// </summary>
    void SendReceive(ReadOnlySpan<byte> send, int destination, Span<byte> receive, int source);

    /// <summary>Stops every rank of the job with <paramref name="message"/> (printed first); does not return.</summary>
    void Abort(string message);
}

/// <summary>The one-process "world": rank 0 of 1; every collective is the identity.</summary>
internal sealed class SingleProcess : ICommunicator
{
    public int Rank => 0;

    public int Size => 1;

    public void SendReceive(ReadOnlySpan<byte> send, int destination, Span<byte> receive, int source) =>
        throw new InvalidOperationException("a single process has no other rank to exchange with");

    public void Abort(string message) => throw new EngineException(message);

    public void Dispose()
    {
    }
}

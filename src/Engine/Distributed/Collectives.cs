using System.Numerics;
using System.Runtime.InteropServices;

namespace Engine.Distributed;

/// <summary>
/// Collectives written over <see cref="ICommunicator.SendReceive"/> in a fixed order, so that for a fixed
/// number of ranks every run reduces identically (MPI's own MPI_Allreduce may pick its algorithm, and so
/// its summation order, by message size and process layout).
/// </summary>
/// <remarks>
/// The all-reduce is the bandwidth-optimal ring: the vector is cut into N chunks; in the reduce-scatter
/// phase chunk c starts at rank c and travels round the ring, each rank adding its own values after the
/// partial sum it received, so chunk c is summed as <c>((x_c + x_{c+1}) + x_{c+2}) + ...</c> (ranks mod N)
/// and ends complete on rank c - 1; the all-gather phase then passes the complete chunks round unchanged,
/// so every rank holds the same bits. Each rank sends and receives 2 (N - 1) / N of the vector in
/// 2 (N - 1) messages, whatever N is.
/// </remarks>
internal static class Collectives
{
    /// <summary>Sums <paramref name="data"/> element-wise over every rank, in place (the ring; fixed order for fixed N).</summary>
    public static void AllReduceSum<T>(ICommunicator comm, Span<T> data)
        where T : unmanaged, IAdditionOperators<T, T, T>
    {
        int n = comm.Size, r = comm.Rank;
        if (n == 1 || data.IsEmpty)
        {
            return;
        }

        int next = (r + 1) % n, previous = (r + n - 1) % n;
        int largest = 0;
        for (int c = 0; c < n; c++)
        {
            largest = Math.Max(largest, ChunkLength(data.Length, n, c));
        }

        T[] received = new T[largest];
        for (int step = 0; step < n - 1; step++)
        {
            int sendChunk = Mod(r - step, n), receiveChunk = Mod(r - step - 1, n);
            Span<T> incoming = received.AsSpan(0, ChunkLength(data.Length, n, receiveChunk));
            comm.SendReceive(MemoryMarshal.AsBytes((ReadOnlySpan<T>)Chunk(data, n, sendChunk)), next, MemoryMarshal.AsBytes(incoming), previous);
            Span<T> own = Chunk(data, n, receiveChunk);
            for (int i = 0; i < own.Length; i++)
            {
                own[i] = incoming[i] + own[i]; // the partial sum of the ranks before, then this rank's values
            }
        }

        for (int step = 0; step < n - 1; step++)
        {
            int sendChunk = Mod(r + 1 - step, n), receiveChunk = Mod(r - step, n);
            comm.SendReceive(MemoryMarshal.AsBytes((ReadOnlySpan<T>)Chunk(data, n, sendChunk)), next,
                MemoryMarshal.AsBytes(Chunk(data, n, receiveChunk)), previous);
        }
    }

    /// <summary>Every rank's <paramref name="mine"/> (any length), indexed by rank, on every rank (a ring all-gather).</summary>
    public static byte[][] AllGather(ICommunicator comm, byte[] mine)
    {
        int n = comm.Size, r = comm.Rank;
        var lengths = new long[n];
        lengths[r] = mine.Length;
        AllReduceSum<long>(comm, lengths); // zeros elsewhere: the sum is every rank's length
        var blocks = new byte[n][];
        for (int k = 0; k < n; k++)
        {
            blocks[k] = k == r ? mine : new byte[checked((int)lengths[k])];
        }

        int next = (r + 1) % n, previous = (r + n - 1) % n;
        for (int step = 0; step < n - 1; step++)
        {
            comm.SendReceive(blocks[Mod(r - step, n)], next, blocks[Mod(r - step - 1, n)], previous);
        }

        return blocks;
    }

    /// <summary>Whether every rank passed the same bytes (e.g. a hash of the configuration); the same answer on every rank.</summary>
    public static int[] RanksDifferingFromRoot(ICommunicator comm, byte[] value)
    {
        byte[][] all = AllGather(comm, value);
        return Enumerable.Range(0, all.Length).Where(k => !all[k].AsSpan().SequenceEqual(all[0])).ToArray();
    }

    /// <summary>The contiguous share [From, To) of <paramref name="count"/> items that rank <paramref name="rank"/> of <paramref name="size"/> takes.</summary>
    public static (int From, int To) Share(int count, int size, int rank) =>
        ((int)((long)count * rank / size), (int)((long)count * (rank + 1) / size));

    private static int ChunkLength(int length, int n, int c) => (int)((long)length * (c + 1) / n - (long)length * c / n);

    private static Span<T> Chunk<T>(Span<T> data, int n, int c) => data.Slice((int)((long)data.Length * c / n), ChunkLength(data.Length, n, c));

    private static int Mod(int x, int n) => ((x % n) + n) % n;
}

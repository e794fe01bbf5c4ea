using System.Collections.Concurrent;
using Engine.Distributed;

namespace Engine.Tests.Distributed;

/// <summary>N ranks as threads of this process, exchanging through queues: the collectives' logic without MPI.</summary>
internal sealed class InProcessGroup
{
    private readonly BlockingCollection<byte[]>[,] mailboxes;   // [from, to]

    private InProcessGroup(int size)
    {
        mailboxes = new BlockingCollection<byte[]>[size, size];
        for (int i = 0; i < size; i++)
        {
            for (int j = 0; j < size; j++)
            {
                mailboxes[i, j] = [];
            }
        }
    }

    /// <summary>Runs <paramref name="body"/> on <paramref name="size"/> ranks at once; returns each rank's result, by rank.</summary>
    public static T[] Run<T>(int size, Func<ICommunicator, T> body)
    {
        var group = new InProcessGroup(size);
        var results = new T[size];
        Parallel.For(0, size, new ParallelOptions { MaxDegreeOfParallelism = size }, rank => results[rank] = body(new Member(group, rank, size)));
        return results;
    }

    private sealed class Member(InProcessGroup group, int rank, int size) : ICommunicator
    {
        public int Rank => rank;

        public int Size => size;

        public void SendReceive(ReadOnlySpan<byte> send, int destination, Span<byte> receive, int source)
        {
            group.mailboxes[rank, destination].Add(send.ToArray());
            byte[] message = group.mailboxes[source, rank].Take();
            Assert.Equal(receive.Length, message.Length);
            message.CopyTo(receive);
        }

        public void Abort(string message) => throw new InvalidOperationException(message);

        public void Dispose()
        {
        }
    }
}

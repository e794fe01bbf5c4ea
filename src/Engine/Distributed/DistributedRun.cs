namespace Engine.Distributed;

/// <summary>Runs a data-parallel job's body on this rank, turning any failure into a stop of every rank.</summary>
internal static class DistributedRun
{
    /// <summary>
    /// Opens the communicator of <paramref name="mode"/> and runs <paramref name="body"/>. An exception on
    /// this rank aborts the whole job (MPI_Abort) with a message naming the rank, so the other ranks never
    /// wait forever in a collective; a rank that dies without one (killed) is noticed by mpiexec, which ends
    /// the others. Each rank names its process id first, so that mpiexec's report of a dead process names a rank.
    /// </summary>
    public static T Execute<T>(DistributedMode mode, Func<DataParallel, T> body)
    {
        if (mode != DistributedMode.Mpi)
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "not a distributed mode");
        }

        MpiCommunicator comm = MpiCommunicator.Open();
        // Straight to stderr, not through EngineTelemetry's logger (a null logger unless the host sets one): when a rank
        // is killed, mpiexec names only its process id, and this line is how a user (and the kill test) maps it to a rank.
        Console.Error.WriteLine($"engine: rank {comm.Rank} of {comm.Size} is process {Environment.ProcessId} on {Environment.MachineName}");
        try
        {
            return body(new DataParallel(comm));
        }
        catch (Exception e)
        {
            comm.Abort($"engine: rank {comm.Rank} of {comm.Size} failed, stopping every rank: {e.Message}");
            throw;
        }
    }
}

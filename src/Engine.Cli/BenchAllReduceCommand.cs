using System.CommandLine;
using System.Globalization;
using Engine.Distributed;

namespace Engine.Cli;

/// <summary><c>engine bench-allreduce</c>: the data-parallel gradient all-reduce alone, under mpiexec.</summary>
internal static class BenchAllReduceCommand
{
    public static Command Create()
    {
        var floats = new Option<int[]>("--floats") { Description = "vector lengths to all-reduce", DefaultValueFactory = _ => [1 << 12, 1 << 16, 1 << 20, 1 << 22], AllowMultipleArgumentsPerToken = true };
        var repeats = new Option<int>("--repeats") { Description = "all-reduces per length (the median is printed)", DefaultValueFactory = _ => 20 };
        var command = new Command("bench-allreduce",
            "Time the fixed-order ring all-reduce of float vectors over MPI (run under mpiexec.mpich -np N); rank 0 prints one JSON line per length.");
        command.Options.Add(floats);
        command.Options.Add(repeats);
        command.SetAction(r => CommandLine.Guard(() =>
        {
            int count = r.GetValue(repeats);
            return DistributedRun.Execute(DistributedMode.Mpi, parallel =>
            {
                foreach (int n in r.GetValue(floats)!)
                {
                    double seconds = AllReduceBenchmark.MedianSeconds(parallel.Communicator, n, count);
                    if (parallel.Rank == 0)
                    {
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"{{\"ranks\":{parallel.Size},\"bytes\":{4L * n},\"median_seconds\":{seconds:G6},\"bus_gbytes_per_second\":{2.0 * (parallel.Size - 1) / parallel.Size * 4L * n / seconds / 1e9:G4}}}"));
                    }
                }

                return 0;
            });
        }));
        return command;
    }
}

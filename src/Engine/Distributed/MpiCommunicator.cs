using System.Runtime.InteropServices;
using Engine.Core;
using MpiNative = MPI.Unsafe;

namespace Engine.Distributed;

/// <summary>
/// <see cref="ICommunicator"/> on MPI's MPI_COMM_WORLD through MPI.NET's raw bindings (<c>MPI.Unsafe</c>).
/// MPI.NET binds the Windows library <c>msmpi</c>; MS-MPI shares MPICH's ABI (the same handle values
/// and status layout), so on Linux the name is mapped to MPICH's <c>libmpich.so.12</c>. Open MPI's
/// library has another ABI and does not fit.
/// </summary>
internal sealed unsafe class MpiCommunicator : ICommunicator
{
    private const string MpichLibrary = "libmpich.so.12";
    private const int ExchangeTag = 19;
    private static readonly Lock InitLock = new();
    private static bool resolverSet;
    private static bool initialized;

    private MpiCommunicator(int rank, int size)
    {
        Rank = rank;
        Size = size;
    }

    public int Rank { get; }

    public int Size { get; }

    /// <summary>
    /// Initialises MPI (once per process) and returns the world communicator. Throws an <see cref="EngineException"/> when MPICH is not installed.
    /// </summary>
    public static MpiCommunicator Open()
    {
        lock (InitLock)
        {
            if (!resolverSet)
            {
                NativeLibrary.SetDllImportResolver(typeof(MpiNative).Assembly, (name, _, _) =>
                    name.StartsWith("msmpi", StringComparison.OrdinalIgnoreCase) ? NativeLibrary.Load(MpichLibrary) : IntPtr.Zero);
                resolverSet = true;
            }

            try
            {
                if (!initialized)
                {
                    int argc = 0;
                    byte** argv = null;
                    Check(MpiNative.MPI_Init(ref argc, ref argv), "MPI_Init");
                    initialized = true;
                    // Finalised once, at exit: MPI cannot be initialised again in a process, and an API
                    // user may run several trainings in one.
                    AppDomain.CurrentDomain.ProcessExit += (_, _) => MpiNative.MPI_Finalize();
                }

                Check(MpiNative.MPI_Comm_rank(MpiNative.MPI_COMM_WORLD, out int rank), "MPI_Comm_rank");
                Check(MpiNative.MPI_Comm_size(MpiNative.MPI_COMM_WORLD, out int size), "MPI_Comm_size");
                return new MpiCommunicator(rank, size);
            }
            catch (DllNotFoundException e)
            {
                throw new EngineException($"--distributed mpi needs MPICH's {MpichLibrary} (Debian: apt install mpich libmpich-dev): {e.Message}");
            }
        }
    }

    public void SendReceive(ReadOnlySpan<byte> send, int destination, Span<byte> receive, int source)
    {
        fixed (byte* s = send)
        fixed (byte* r = receive)
        {
            Check(MpiNative.MPI_Sendrecv((IntPtr)s, send.Length, MpiNative.MPI_BYTE, destination, ExchangeTag,
                (IntPtr)r, receive.Length, MpiNative.MPI_BYTE, source, ExchangeTag, MpiNative.MPI_COMM_WORLD, out _), "MPI_Sendrecv");
        }
    }

    public void Abort(string message)
    {
        // Written and flushed to stderr directly: MPI_Abort kills this process next, so a logger's asynchronous or
        // host-configured sink (a null one by default) could lose the only message that names the failing rank.
        Console.Error.WriteLine(message);
        Console.Error.Flush();
        MpiNative.MPI_Abort(MpiNative.MPI_COMM_WORLD, 1);
        Environment.Exit(1); // MPI_Abort does not return; this is for an implementation that would
    }

    /// <summary>Nothing: MPI is finalised when the process exits.</summary>
    public void Dispose()
    {
    }

    private static void Check(int code, string call)
    {
        if (code != 0)
        {
            throw new EngineException($"{call} failed with MPI error code {code}");
        }
    }
}

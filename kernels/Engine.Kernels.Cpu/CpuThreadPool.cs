using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Engine.Kernels.Cpu;

/// <summary>A unit of parallel work: a struct so the JIT specialises and inlines the body.</summary>
internal interface IParallelWork
{
    /// <summary>Runs item <paramref name="item"/> on worker <paramref name="worker"/> (0 = the calling thread).</summary>
    void Execute(int item, int worker);
}

/// <summary>
/// A persistent pool of worker threads that, together with the calling thread, runs the items of a
/// parallel loop. Items are handed out dynamically, so results must not depend on which worker ran
/// an item: kernels give each item a disjoint part of the output and reduce in a fixed order,
/// which keeps them bit-for-bit deterministic whatever the thread count.
/// </summary>
/// <remarks>
/// <para>
/// No allocation per loop: the work struct stays on the caller's stack and workers reach it through
/// a pointer and a function pointer. A loop started from inside a worker (or a loop body) runs inline.
/// </para>
/// <para>
/// Items are claimed from one 64-bit word, (loop generation, next item), by compare-and-swap, and a
/// loop is over when its items are <em>done</em>, not when every worker has reported: a worker that
/// is asleep or descheduled when a loop starts is simply not waited for (on a loaded machine that
/// was the whole cost). When a loop ends the word is closed before the next loop's fields are
/// written, so a late worker can never claim an item of a loop it did not see start.
/// </para>
/// <para>
/// Waiting is bounded spinning, then blocking: idle workers spin (yielding now and then) for
/// <see cref="WorkerSpin"/>, which covers the gaps between the many small ops of a decode step, then
/// sleep on a monitor; the caller, once no item is left to claim, spins for <see cref="CallerSpin"/>
/// for the items still running elsewhere, then sleeps until the last one signals. A sleeping
/// caller frees its core, so a descheduled worker holding the last item can run there.
/// </para>
/// </remarks>
internal sealed unsafe class CpuThreadPool : IDisposable
{
    /// <summary>How long an idle worker spins for the next loop before it sleeps.</summary>
    private static readonly long WorkerSpin = Stopwatch.Frequency / 5000;   // 200 us

    /// <summary>How long the caller spins for running items before it sleeps.</summary>
    private static readonly long CallerSpin = Stopwatch.Frequency / 20000;  // 50 us

    /// <summary>The item index of a closed loop: past any item count.</summary>
    private const int Closed = int.MaxValue;

    [ThreadStatic]
    private static bool insideLoop;

    private readonly Thread[] threads;
    private readonly object wakeGate = new();
    private readonly object doneGate = new();

    // (generation << 32) | next item: see Word; generation 0 with Closed before the first loop
    private long state;
    private int generation;
    private void* work;
    private delegate*<void*, int, int, void> invoke;
    private int itemCount;
    private int itemsDone;
    private int sleepers;
    private int callerWaiting;
    private volatile bool stopping;
    private Exception? failure;

    /// <summary>Creates a pool with <paramref name="threadCount"/> threads in all (the caller included).</summary>
    public CpuThreadPool(int threadCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threadCount, 1);
        ThreadCount = threadCount;
        state = Word(0, Closed);
        threads = new Thread[threadCount - 1];
        for (int i = 0; i < threads.Length; i++)
        {
            int worker = i + 1;
            threads[i] = new Thread(() => WorkerLoop(worker))
            {
                IsBackground = true,
                Name = $"engine-cpu-{worker}",
            };
            threads[i].Start();
        }
    }

    /// <summary>Threads that run loop items, the calling thread included.</summary>
    public int ThreadCount { get; }

    /// <summary>The thread count to use by default: ENGINE_CPU_THREADS, else the processor count.</summary>
    public static int DefaultThreadCount
    {
        get
        {
            string? text = Environment.GetEnvironmentVariable("ENGINE_CPU_THREADS");
            return int.TryParse(text, out int n) && n > 0 ? n : Environment.ProcessorCount;
        }
    }

    /// <summary>Runs <c>work.Execute(i, worker)</c> for every i in [0, count) and returns when all are done.</summary>
    public void For<T>(int count, ref T body) where T : struct, IParallelWork
    {
        if (count <= 0)
        {
            return;
        }

        if (count == 1 || threads.Length == 0 || insideLoop)
        {
            for (int i = 0; i < count; i++)
            {
                body.Execute(i, 0);
            }

            return;
        }

        insideLoop = true;
        try
        {
            // The word is closed (the last loop ended), so no worker can claim while the fields change.
            work = Unsafe.AsPointer(ref body);
            invoke = &Invoke<T>;
            itemCount = count;
            itemsDone = 0;
            failure = null;
            int gen = generation = unchecked(generation + 1);
            // Publishes the fields; a full fence, paired with the sleepers' increment-then-check.
            Interlocked.Exchange(ref state, Word(gen, 0));
            if (Volatile.Read(ref sleepers) > 0)
            {
                lock (wakeGate)
                {
                    Monitor.PulseAll(wakeGate);
                }
            }

            RunItems(gen, 0);
            WaitForItems(count);
            Interlocked.Exchange(ref state, Word(gen, Closed));
            work = null;
            if (failure is not null)
            {
                throw new AggregateException("a parallel kernel item failed", failure);
            }
        }
        finally
        {
            insideLoop = false;
        }
    }

    public void Dispose()
    {
        stopping = true;
        lock (wakeGate)
        {
            Monitor.PulseAll(wakeGate);
        }

        foreach (Thread t in threads)
        {
            t.Join();
        }
    }

    /// <summary>The claim word: the loop's generation (wrapping) in the high half, the next item in the low.</summary>
    private static long Word(int gen, int item) => ((long)gen << 32) | (uint)item;

    private static int Generation(long word) => (int)(word >> 32);

    private static void Invoke<T>(void* state, int item, int worker) where T : struct, IParallelWork =>
        Unsafe.AsRef<T>(state).Execute(item, worker);

    /// <summary>Claims and runs items of loop <paramref name="gen"/> until none is left.</summary>
    private void RunItems(int gen, int worker)
    {
        // Read after the word showed this generation, so they are this loop's or a later one's; a
        // later loop's are never used, since this generation's word is closed before they are written.
        var fn = invoke;
        void* body = work;
        int count = itemCount;
        while (true)
        {
            long s = Volatile.Read(ref state);
            if (Generation(s) != gen || (int)s >= count)
            {
                return;
            }

            if (Interlocked.CompareExchange(ref state, s + 1, s) != s)
            {
                continue;
            }

            try
            {
                fn(body, (int)s, worker);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref failure, e, null);
            }
            finally
            {
                if (Interlocked.Increment(ref itemsDone) == count && Volatile.Read(ref callerWaiting) != 0)
                {
                    lock (doneGate)
                    {
                        Monitor.PulseAll(doneGate);
                    }
                }
            }
        }
    }

    /// <summary>The caller's wait for the items other threads still run: spin briefly, then sleep.</summary>
    private void WaitForItems(int count)
    {
        if (Volatile.Read(ref itemsDone) == count)
        {
            return;
        }

        long until = Stopwatch.GetTimestamp() + CallerSpin;
        var spin = default(SpinWait);
        while (Volatile.Read(ref itemsDone) != count)
        {
            if (Stopwatch.GetTimestamp() < until)
            {
                // Spins, then yields to other threads of this core (never Sleep(1)).
                spin.SpinOnce(sleep1Threshold: -1);
                continue;
            }

            lock (doneGate)
            {
                // A full fence before re-reading: pairs with the last item's increment-then-check.
                Interlocked.Exchange(ref callerWaiting, 1);
                while (Volatile.Read(ref itemsDone) != count)
                {
                    Monitor.Wait(doneGate);
                }

                callerWaiting = 0;
            }
        }
    }

    private void WorkerLoop(int worker)
    {
        insideLoop = true;
        int seen = Generation(Volatile.Read(ref state));
        while (true)
        {
            long until = Stopwatch.GetTimestamp() + WorkerSpin;
            int spins = 0;
            while (Generation(Volatile.Read(ref state)) == seen && !stopping)
            {
                if (Stopwatch.GetTimestamp() < until)
                {
                    // Mostly pause instructions; a yield now and then so that on a loaded machine
                    // the spinning does not keep others (the caller's threads too) off the core.
                    if (++spins % 64 == 0)
                    {
                        Thread.Yield();
                    }
                    else
                    {
                        Thread.SpinWait(20);
                    }

                    continue;
                }

                lock (wakeGate)
                {
                    // A full fence before re-reading the word: pairs with the caller's
                    // publish-then-read so a wake-up cannot be missed.
                    Interlocked.Increment(ref sleepers);
                    while (Generation(Volatile.Read(ref state)) == seen && !stopping)
                    {
                        Monitor.Wait(wakeGate);
                    }

                    Interlocked.Decrement(ref sleepers);
                }
            }

            if (stopping)
            {
                return;
            }

            seen = Generation(Volatile.Read(ref state));
            RunItems(seen, worker);
        }
    }
}

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
/// No allocation per loop: the work struct stays on the caller's stack and workers reach it through
/// a pointer and a function pointer. Idle workers spin briefly (decode issues many small ops in a
/// row) and then sleep. A loop started from inside a worker runs inline.
/// </remarks>
internal sealed unsafe class CpuThreadPool : IDisposable
{
    private const int SpinIterations = 20_000;

    [ThreadStatic]
    private static bool insideLoop;

    private readonly Thread[] threads;
    private readonly object gate = new();
    private void* work;
    private delegate*<void*, int, int, void> invoke;
    private int itemCount;
    private int nextItem;
    private int busyWorkers;
    private int generation;
    private int sleepers;
    private volatile bool stopping;
    private Exception? failure;

    /// <summary>Creates a pool with <paramref name="threadCount"/> threads in all (the caller included).</summary>
    public CpuThreadPool(int threadCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threadCount, 1);
        ThreadCount = threadCount;
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
            work = Unsafe.AsPointer(ref body);
            invoke = &Invoke<T>;
            itemCount = count;
            nextItem = 0;
            failure = null;
            Volatile.Write(ref busyWorkers, threads.Length);
            Interlocked.Increment(ref generation);
            if (Volatile.Read(ref sleepers) > 0)
            {
                lock (gate)
                {
                    Monitor.PulseAll(gate);
                }
            }

            RunItems(0);
            var spin = new SpinWait();
            while (Volatile.Read(ref busyWorkers) != 0)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

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
        Interlocked.Increment(ref generation);
        lock (gate)
        {
            Monitor.PulseAll(gate);
        }

        foreach (Thread t in threads)
        {
            t.Join();
        }
    }

    private static void Invoke<T>(void* state, int item, int worker) where T : struct, IParallelWork =>
        Unsafe.AsRef<T>(state).Execute(item, worker);

    private void RunItems(int worker)
    {
        int count = itemCount;
        var fn = invoke;
        void* state = work;
        int item;
        while ((item = Interlocked.Increment(ref nextItem) - 1) < count)
        {
            try
            {
                fn(state, item, worker);
            }
            catch (Exception e)
            {
                failure ??= e;
            }
        }
    }

    private void WorkerLoop(int worker)
    {
        insideLoop = true;
        int seen = Volatile.Read(ref generation);
        while (true)
        {
            int spins = 0;
            while (Volatile.Read(ref generation) == seen && spins < SpinIterations)
            {
                Thread.SpinWait(20);
                spins++;
            }

            if (Volatile.Read(ref generation) == seen)
            {
                lock (gate)
                {
                    // A full fence before re-reading the generation: pairs with the caller's
                    // increment-then-read so a wake-up cannot be missed.
                    Interlocked.Increment(ref sleepers);
                    while (Volatile.Read(ref generation) == seen)
                    {
                        Monitor.Wait(gate);
                    }

                    Interlocked.Decrement(ref sleepers);
                }
            }

            seen = Volatile.Read(ref generation);
            if (stopping)
            {
                return;
            }

            RunItems(worker);
            Interlocked.Decrement(ref busyWorkers);
        }
    }
}

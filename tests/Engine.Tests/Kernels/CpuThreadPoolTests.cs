using Engine.Kernels.Cpu;

namespace Engine.Tests.Kernels;

/// <summary>
/// The CPU thread pool: every item runs exactly once per loop (also back to back, with late
/// workers about), worker indices stay in range, nested loops run inline, a failing item's
/// exception reaches the caller and leaves the pool usable.
/// </summary>
public sealed unsafe class CpuThreadPoolTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 7)]
    [InlineData(2, 1)]
    [InlineData(2, 2)]
    [InlineData(2, 3)]
    [InlineData(3, 1000)]
    [InlineData(4, 10_000)]
    public void Every_item_runs_once_on_a_valid_worker(int threads, int count)
    {
        using var pool = new CpuThreadPool(threads);
        int[] hits = new int[count];
        int[] workers = new int[count];
        fixed (int* ph = hits, pw = workers)
        {
            var work = new RecordWork { Hits = ph, Workers = pw };
            pool.For(count, ref work);
        }

        Assert.All(hits, h => Assert.Equal(1, h));
        Assert.All(workers, w => Assert.InRange(w, 0, threads - 1));
    }

    [Fact]
    public void Back_to_back_loops_run_each_item_exactly_once()
    {
        // Many short loops of varying sizes, as decode issues them: a worker that wakes late must
        // never claim an item of a loop it did not see start, nor run one twice.
        const int loops = 20_000, maxCount = 9;
        using var pool = new CpuThreadPool(3);
        int[] hits = new int[loops * maxCount];
        fixed (int* ph = hits)
        {
            for (int l = 0; l < loops; l++)
            {
                var work = new SpinWork { Hits = ph + l * maxCount, Spin = l % 3 };
                pool.For(2 + l % (maxCount - 1), ref work);
            }
        }

        for (int l = 0; l < loops; l++)
        {
            int count = 2 + l % (maxCount - 1);
            for (int i = 0; i < maxCount; i++)
            {
                Assert.True(hits[l * maxCount + i] == (i < count ? 1 : 0), $"loop {l} item {i}: {hits[l * maxCount + i]} runs");
            }
        }
    }

    [Fact]
    public void A_loop_inside_an_item_runs_inline_on_that_thread()
    {
        using var pool = new CpuThreadPool(2);
        int[] inner = new int[4 * 5];
        int[] sameThread = new int[4];
        fixed (int* pi = inner, ps = sameThread)
        {
            var work = new NestedWork { Pool = pool, Inner = pi, SameThread = ps };
            pool.For(4, ref work);
        }

        Assert.All(inner, h => Assert.Equal(1, h));
        Assert.All(sameThread, s => Assert.Equal(1, s));
    }

    [Fact]
    public void A_failing_item_reaches_the_caller_and_the_pool_goes_on()
    {
        using var pool = new CpuThreadPool(2);
        for (int round = 0; round < 3; round++)
        {
            var failing = new FailingWork { Bad = 37 };
            var e = Assert.Throws<AggregateException>(() => pool.For(100, ref failing));
            Assert.IsType<InvalidOperationException>(e.InnerException);

            int[] hits = new int[50];
            int[] workers = new int[50];
            fixed (int* ph = hits, pw = workers)
            {
                var work = new RecordWork { Hits = ph, Workers = pw };
                pool.For(50, ref work);
            }

            Assert.All(hits, h => Assert.Equal(1, h));
        }
    }

    [Fact]
    public void Results_do_not_depend_on_the_thread_count()
    {
        // Each item writes its own slot: the same values whichever thread ran it.
        float[] one = Run(1), four = Run(4);
        Assert.True(one.AsSpan().SequenceEqual(four));

        static float[] Run(int threads)
        {
            using var pool = new CpuThreadPool(threads);
            float[] result = new float[333];
            fixed (float* pr = result)
            {
                var work = new SumWork { Result = pr };
                pool.For(result.Length, ref work);
            }

            return result;
        }
    }

    [Fact]
    public void Dispose_stops_sleeping_and_spinning_workers()
    {
        for (int i = 0; i < 20; i++)
        {
            var pool = new CpuThreadPool(3);
            if (i % 2 == 0)
            {
                int[] hits = new int[10];
                int[] workers = new int[10];
                fixed (int* ph = hits, pw = workers)
                {
                    var work = new RecordWork { Hits = ph, Workers = pw };
                    pool.For(10, ref work);
                }
            }

            pool.Dispose();
        }
    }

    private struct RecordWork : IParallelWork
    {
        public int* Hits;
        public int* Workers;

        public readonly void Execute(int item, int worker)
        {
            Interlocked.Increment(ref Hits[item]);
            Workers[item] = worker;
        }
    }

    private struct SpinWork : IParallelWork
    {
        public int* Hits;
        public int Spin;

        public readonly void Execute(int item, int worker)
        {
            Thread.SpinWait(Spin * 50);
            Interlocked.Increment(ref Hits[item]);
        }
    }

    private struct NestedWork : IParallelWork
    {
        public CpuThreadPool Pool;
        public int* Inner;
        public int* SameThread;

        public readonly void Execute(int item, int worker)
        {
            var inner = new ThreadCheckWork { Hits = Inner + item * 5, Thread = Environment.CurrentManagedThreadId };
            Pool.For(5, ref inner);
            SameThread[item] = inner.AllSame ? 1 : 0;
        }
    }

    private struct ThreadCheckWork : IParallelWork
    {
        public int* Hits;
        public int Thread;
        public bool AllSame;

        public void Execute(int item, int worker)
        {
            Interlocked.Increment(ref Hits[item]);
            AllSame = (item == 0 || AllSame) && worker == 0 && Environment.CurrentManagedThreadId == Thread;
        }
    }

    private struct FailingWork : IParallelWork
    {
        public int Bad;

        public readonly void Execute(int item, int worker)
        {
            if (item == Bad)
            {
                throw new InvalidOperationException("item failed");
            }
        }
    }

    private struct SumWork : IParallelWork
    {
        public float* Result;

        public readonly void Execute(int item, int worker)
        {
            float s = 0;
            for (int i = 1; i <= item + 10; i++)
            {
                s += 1f / i;
            }

            Result[item] = s;
        }
    }
}

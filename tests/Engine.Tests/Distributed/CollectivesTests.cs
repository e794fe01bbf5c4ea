using Engine.Core;
using Engine.Distributed;
using Engine.Kernels.Cpu;
using Engine.Model;
using Engine.Tests.Support;

namespace Engine.Tests.Distributed;

/// <summary>The fixed-order collectives and the gradient all-reduce, with ranks as threads of this process.</summary>
public sealed class CollectivesTests
{
    [Theory]
    [InlineData(2, 1001)]
    [InlineData(3, 10)]
    [InlineData(4, 3)]   // fewer elements than ranks: some chunks are empty
    [InlineData(5, 257)]
    public void Ring_all_reduce_sums_each_chunk_in_its_fixed_order_and_every_rank_gets_the_same_bits(int ranks, int length)
    {
        float[][] inputs = Enumerable.Range(0, ranks).Select(r => TestData.Uniform(100 + r, length, 3f)).ToArray();
        float[][] outputs = InProcessGroup.Run(ranks, comm =>
        {
            float[] mine = (float[])inputs[comm.Rank].Clone();
            Collectives.AllReduceSum<float>(comm, mine);
            return mine;
        });

        // The documented order: chunk c (elements [len*c/N, len*(c+1)/N)) is ((x_c + x_{c+1}) + x_{c+2}) + ..., ranks mod N.
        var expected = new float[length];
        for (int c = 0; c < ranks; c++)
        {
            for (int i = length * c / ranks; i < length * (c + 1) / ranks; i++)
            {
                float sum = inputs[c][i];
                for (int k = 1; k < ranks; k++)
                {
                    sum += inputs[(c + k) % ranks][i];
                }

                expected[i] = sum;
            }
        }

        foreach (float[] output in outputs)
        {
            Assert.Equal(expected, output);
        }

        for (int i = 0; i < length; i++)
        {
            double exact = inputs.Sum(x => (double)x[i]);
            Assert.True(Math.Abs(outputs[0][i] - exact) <= 1e-5 * ranks * 3, $"element {i}: {outputs[0][i]} against {exact}");
        }
    }

    [Fact]
    public void Ring_all_reduce_is_bit_identical_from_run_to_run()
    {
        float[][] inputs = Enumerable.Range(0, 3).Select(r => TestData.Uniform(7 + r, 500, 1e3f)).ToArray();
        float[] Once() => InProcessGroup.Run(3, comm =>
        {
            float[] mine = (float[])inputs[comm.Rank].Clone();
            Collectives.AllReduceSum<float>(comm, mine);
            return mine;
        })[1];

        Assert.Equal(Once(), Once());
    }

    [Fact]
    public void All_gather_returns_every_ranks_bytes_by_rank_including_empty_ones()
    {
        byte[] Payload(int rank) => Enumerable.Range(0, rank * 3).Select(i => (byte)(rank * 10 + i)).ToArray(); // rank 0 sends nothing
        byte[][][] gathered = InProcessGroup.Run(4, comm => Collectives.AllGather(comm, Payload(comm.Rank)));
        foreach (byte[][] onRank in gathered)
        {
            Assert.Equal(4, onRank.Length);
            for (int k = 0; k < 4; k++)
            {
                Assert.Equal(Payload(k), onRank[k]);
            }
        }
    }

    [Fact]
    public void A_rank_with_another_fingerprint_is_refused_on_every_rank_with_its_number()
    {
        string[] messages = InProcessGroup.Run(3, comm =>
        {
            var parallel = new DataParallel(comm, bucketFloats: 8);
            byte[] fingerprint = comm.Rank == 2 ? [1, 2, 4] : [1, 2, 3];
            return Assert.Throws<EngineException>(() => parallel.RequireSameRun(fingerprint, "settings")).Message;
        });
        Assert.All(messages, m => Assert.StartsWith("rank 2 of 3 started with settings different from rank 0's", m, StringComparison.Ordinal));
        InProcessGroup.Run(2, comm =>
        {
            new DataParallel(comm, 8).RequireSameRun([9, 9], "settings");
            return 0;
        });
    }

    [Fact]
    public void Shares_cover_the_items_once_in_rank_order()
    {
        for (int size = 1; size <= 5; size++)
        {
            var covered = new List<int>();
            for (int rank = 0; rank < size; rank++)
            {
                var (from, to) = Collectives.Share(7, size, rank);
                covered.AddRange(Enumerable.Range(from, to - from));
            }

            Assert.Equal(Enumerable.Range(0, 7), covered);
        }
    }

    [Fact]
    public void Gradient_all_reduce_in_small_buckets_leaves_the_weighted_sum_on_every_rank()
    {
        const int ranks = 3;
        float[] weights = [0.5f, 0.25f, 0.25f];
        ModelConfig config = ModelConfig.Gpt2(12, 16, 1, 2, 8);
        long total;
        using (CpuAccelerator probe = TestDevices.Cpu(1))
        using (var shape = new Transformer(probe, config))
        {
            total = shape.Layout.TotalLength;
        }

        float[][] grads = Enumerable.Range(0, ranks).Select(r => TestData.Uniform(40 + r, total, 1f)).ToArray();
        float[][] results = InProcessGroup.Run(ranks, comm =>
        {
            using CpuAccelerator acc = TestDevices.Cpu(1);
            using var model = new Transformer(acc, config);
            model.EnsureGradients();
            acc.Upload(model.Grads!.All, grads[comm.Rank]);
            var parallel = new DataParallel(comm, bucketFloats: 37); // many buckets, the last one short
            parallel.AllReduceGradients(model, weights[comm.Rank]);
            Assert.Equal(total * sizeof(float), parallel.Totals.Bytes);
            return acc.ToArray(model.Grads!.All);
        });

        Assert.Equal(results[0], results[1]);
        Assert.Equal(results[0], results[2]);
        for (int i = 0; i < total; i++)
        {
            double exact = Enumerable.Range(0, ranks).Sum(r => (double)weights[r] * grads[r][i]);
            Assert.True(Math.Abs(results[0][i] - exact) <= 1e-6, $"gradient {i}: {results[0][i]} against {exact}");
        }
    }
}

using Engine.Core;
using Engine.Model;
using Engine.Pike;
using Engine.Tests.Backends;
using Engine.Tests.Support;
using Engine.Tokenizers;
using Engine.Training;

namespace Engine.Tests.Pike;

/// <summary>PiKE's invariants (methods.md §4): the mixers, the rounding of shares, the two-half estimators and multi-task SFT.</summary>
public sealed class PikeTests(BackendFixture fx) : IClassFixture<BackendFixture>
{
    private static TaskStatistics Stat(double normSquared, double variance, double loss = 1) => new(normSquared, variance, loss);

    [Fact]
    public void Weights_stay_on_the_simplex_and_the_shares_sum_to_the_batch()
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 300; trial++)
        {
            int k = rng.Next(2, 7), b = rng.Next(k, 80), min = rng.Next(0, b / k + 1);
            var mixer = new PikeMixer([.. Enumerable.Range(0, k).Select(_ => rng.NextDouble() + 1e-3)], rng.NextDouble() * 3, rng.NextDouble() * 30, b);
            for (int update = 0; update < 5; update++)
            {
                mixer.Update([.. Enumerable.Range(0, k).Select(_ => Stat(rng.NextDouble() * 20 - 2, rng.NextDouble() * 100))]);
                Assert.All(mixer.Weights, w => Assert.True(w >= 0 && w <= 1, $"weight {w}"));
                Assert.Equal(1, mixer.Weights.Sum(), 12);
                int[] counts = Simplex.Round(mixer.Weights, b, min);
                Assert.Equal(b, counts.Sum());
                Assert.All(counts, c => Assert.True(c >= min, $"share {c} below the minimum {min}"));
                // Nearest rounding: when no share is lifted to the minimum, every share is within one of b w_k.
                if (mixer.Weights.All(w => b * w >= min))
                {
                    for (int i = 0; i < k; i++)
                    {
                        Assert.True(Math.Abs(counts[i] - b * mixer.Weights[i]) < 1 + 1e-9 * b, $"share {counts[i]} for target {b * mixer.Weights[i]}");
                    }
                }
            }
        }
    }

    [Fact]
    public void Rounding_meets_its_examples_and_rejects_a_batch_too_small_for_the_minimum()
    {
        Assert.Equal([2, 1, 1], Simplex.Round([0.5, 0.25, 0.25], 4, 1));
        Assert.Equal([1, 1, 30], Simplex.Round([0.0, 0.0, 1.0], 32, 1));
        Assert.Equal([0, 0, 32], Simplex.Round([0.0, 0.0, 1.0], 32, 0));
        Assert.Equal([11, 11, 10], Simplex.Round([1 / 3.0, 1 / 3.0, 1 / 3.0], 32, 1)); // ties to the lower index
        var e = Assert.Throws<EngineException>(() => Simplex.Round([0.5, 0.5], 1, 1));
        Assert.Contains("batch size 1", e.Message);
    }

    [Fact]
    public void Equal_statistics_leave_the_weights_unchanged()
    {
        double[] initial = [0.1, 0.2, 0.3, 0.4];
        var pike = new PikeMixer(initial, 0.7, 3, 32);
        var balanced = new BalancedPikeMixer(initial, 0.7, 3, 32, 3);
        for (int i = 0; i < 4; i++)
        {
            pike.Update([.. initial.Select(_ => Stat(5, 40, 2))]);
            balanced.Update([.. initial.Select(_ => Stat(5, 40, 2))]);
        }

        for (int k = 0; k < initial.Length; k++)
        {
            Assert.Equal(initial[k], pike.Weights[k], 12);
            Assert.Equal(initial[k], balanced.Weights[k], 12);
        }
    }

    [Fact]
    public void Zero_zetas_are_static_mixing()
    {
        double[] initial = [0.6, 0.3, 0.1];
        var mixer = new PikeMixer(initial, 0, 0, 16);
        mixer.Update([Stat(100, 1), Stat(0, 1000), Stat(-3, 5)]);
        mixer.Update([Stat(1, 1e4), Stat(50, 0), Stat(7, 7)]);
        for (int k = 0; k < initial.Length; k++)
        {
            Assert.Equal(initial[k], mixer.Weights[k], 12);
        }

        Assert.False(new StaticMixer(initial).Adaptive);
    }

    [Fact]
    public void A_larger_gradient_norm_raises_a_weight_and_a_larger_variance_lowers_it()
    {
        foreach (bool balanced in new[] { false, true })
        {
            PikeMixer New() => balanced ? new BalancedPikeMixer([1, 1, 1], 0.5, 2, 8, 3) : new PikeMixer([1, 1, 1], 0.5, 2, 8);
            var norm = New();
            norm.Update([Stat(4, 10), Stat(2, 10), Stat(2, 10)]);
            Assert.True(norm.Weights[0] > 1 / 3.0 && norm.Weights[1] < 1 / 3.0, $"norm: {string.Join(", ", norm.Weights)}");
            var variance = New();
            variance.Update([Stat(2, 40), Stat(2, 10), Stat(2, 10)]);
            Assert.True(variance.Weights[0] < 1 / 3.0 && variance.Weights[1] > 1 / 3.0, $"variance: {string.Join(", ", variance.Weights)}");
            // The exact update: w_k ∝ w_k exp(zeta1 g_k - zeta2 s_k / (2b)).
            double e0 = Math.Exp(-2 * 40 / 16.0), e1 = Math.Exp(-2 * 10 / 16.0);
            if (!balanced)
            {
                Assert.Equal(e0 / (e0 + 2 * e1), variance.Weights[0], 12);
            }
        }
    }

    [Fact]
    public void Tilted_weights_sum_to_tau_and_go_from_uniform_to_the_worst_task()
    {
        double[] losses = [0.5, 2.0, 1.0];
        double[] y = BalancedPikeMixer.TiltedWeights(losses, 3);
        Assert.Equal(3, y.Sum(), 12);
        Assert.True(y[1] > y[2] && y[2] > y[0]);
        double[] small = BalancedPikeMixer.TiltedWeights(losses, 1e-6);
        Assert.All(small, v => Assert.Equal(1e-6 / 3, v, 9));
        double[] large = BalancedPikeMixer.TiltedWeights(losses, 200);
        Assert.Equal(200, large[1], 6);
    }

    /// <summary>
    /// Example 2.1 of the paper (K = 2, <c>L_k = 0.5 theta_k^2</c>, SGD step eta): the expected loss after one step with
    /// shares (w, 1 - w) is <c>sum_k 0.5 (1 - eta w_k)^2 t_k + eta^2 w_k s_k / b</c> (the noise convention of the spec's
    /// closed form). Its minimiser found by brute force, and the fixed point of PiKE's exponentiated-gradient update on it,
    /// match the closed form.
    /// </summary>
    [Theory]
    [InlineData(1.0, 1.0, 4.0, 4.0, 0.5, 8)]     // symmetric: 1/2
    [InlineData(1.0, 1.0, 6.0, 4.0, 0.5, 8)]     // task 1 noisier: below 1/2
    [InlineData(1.5, 1.0, 4.0, 4.0, 0.5, 16)]    // task 1 further from its optimum: above 1/2
    [InlineData(1.2, 0.8, 2.0, 9.0, 0.3, 4)]
    public void The_k2_closed_form_is_the_minimiser_and_the_fixed_point_of_the_update(double theta1, double theta2, double s1, double s2, double eta, int b)
    {
        double t1 = theta1 * theta1, t2 = theta2 * theta2;
        double Expected(double w) => 0.5 * Math.Pow(1 - eta * w, 2) * t1 + eta * eta * w * s1 / b
                                     + 0.5 * Math.Pow(1 - eta * (1 - w), 2) * t2 + eta * eta * (1 - w) * s2 / b;
        double closed = PikeTheory.OptimalShareK2(theta1, theta2, s1, s2, eta, b);
        double best = Enumerable.Range(0, 100_001).Select(i => i / 100_000.0).MinBy(Expected);
        Assert.Equal(best, closed, 4);
        if (s1 == s2 && theta1 == theta2)
        {
            Assert.Equal(0.5, closed, 12);
        }

        // Mirror descent on the expected loss: the gradient of Expected w.r.t. w_k is -eta (1 - eta w_k) t_k + eta^2 s_k / b.
        double[] w = [0.5, 0.5];
        for (int i = 0; i < 20_000; i++)
        {
            w = Simplex.Exponentiate(w, [-0.5 * (-eta * (1 - eta * w[0]) * t1 + eta * eta * s1 / b), -0.5 * (-eta * (1 - eta * w[1]) * t2 + eta * eta * s2 / b)]);
        }

        Assert.Equal(closed, w[0], 4);
    }

    /// <summary>
    /// The two-half estimators on a synthetic quadratic: per-example gradients <c>mu + noise</c> with known mean and covariance;
    /// over many draws the means of <c>&lt;g_a, g_b&gt;</c> and <c>(n/4)||g_a - g_b||^2</c> fall within four standard errors
    /// of <c>||mu||^2</c> and <c>tr(Sigma)</c>.
    /// </summary>
    [Fact]
    public void The_two_half_estimators_are_unbiased_on_a_synthetic_quadratic() => Unbiased(fx.Cpu);

    [Theory]
    [BackendDevices]
    public void The_two_half_estimators_are_unbiased_on_a_device(string device) => Unbiased(fx.Device(device), draws: 300);

    private static void Unbiased(Accelerator acc, int draws = 2000)
    {
        const int d = 40, n = 8;
        var rng = new Random(11);
        double[] mu = [.. Enumerable.Range(0, d).Select(j => 0.3 * Math.Sin(j))];
        double[] sd = [.. Enumerable.Range(0, d).Select(j => 0.2 + 0.05 * (j % 7))];
        double trueNorm = mu.Sum(x => x * x), trueVariance = sd.Sum(x => x * x);
        using var stats = new GradientStatistics(acc, d, 1);
        using DeviceBuffer a = acc.Allocate(d), b = acc.Allocate(d);
        var norms = new double[draws];
        var variances = new double[draws];
        for (int draw = 0; draw < draws; draw++)
        {
            float[] HalfMean()
            {
                var sum = new double[d];
                for (int i = 0; i < n / 2; i++)
                {
                    for (int j = 0; j < d; j++)
                    {
                        sum[j] += mu[j] + sd[j] * Gaussian(rng);
                    }
                }

                return [.. sum.Select(s => (float)(s / (n / 2)))];
            }

            acc.Upload(a.All, HalfMean());
            acc.Upload(b.All, HalfMean());
            (norms[draw], variances[draw]) = stats.FromHalves(0, a.All, b.All, n);
        }

        static (double Mean, double Se) MeanSe(double[] x)
        {
            double m = x.Average();
            return (m, Math.Sqrt(x.Sum(v => (v - m) * (v - m)) / (x.Length - 1) / x.Length));
        }

        var (normMean, normSe) = MeanSe(norms);
        var (varMean, varSe) = MeanSe(variances);
        Assert.True(Math.Abs(normMean - trueNorm) < 4 * normSe, $"<g_a, g_b>: mean {normMean} vs {trueNorm} (se {normSe})");
        Assert.True(Math.Abs(varMean - trueVariance) < 4 * varSe, $"(n/4)||g_a - g_b||^2: mean {varMean} vs {trueVariance} (se {varSe})");
    }

    [Fact]
    public void The_pairwise_cosine_is_that_of_the_task_gradients()
    {
        Accelerator acc = fx.Cpu;
        using var stats = new GradientStatistics(acc, 3, 2);
        // Each task's mean gradient is (a + b) / 2 = a when both halves are equal.
        using DeviceBuffer a = acc.Put([1f, 0f, 0f]), b = acc.Put([1f, 0f, 0f]);
        stats.FromHalves(0, a.All, b.All, 2);
        using DeviceBuffer c = acc.Put([1f, 1f, 0f]), e = acc.Put([1f, 1f, 0f]);
        stats.FromHalves(1, c.All, e.All, 2);
        Assert.Equal(Math.Sqrt(0.5), stats.MeanPairwiseCosine(), 5);
    }

    [Fact]
    public void A_missing_or_malformed_task_file_or_unknown_task_is_a_one_line_error_naming_it()
    {
        string dir = Directory.CreateTempSubdirectory("pike").FullName;
        try
        {
            string missing = Path.Combine(dir, "missing.jsonl");
            var e = Assert.Throws<EngineException>(() => MixedTask.Parse(["addition", missing], 1));
            Assert.Contains("task 2", e.Message);
            Assert.Contains("missing.jsonl", e.Message);
            Assert.DoesNotContain('\n', e.Message);

            string bad = Path.Combine(dir, "bad.jsonl");
            File.WriteAllText(bad, "{\"prompt\": \"1+1=\", \"answer\": \"2\"}\nthis is not json\n");
            e = Assert.Throws<EngineException>(() => MixedTask.Parse(["sorting", bad, "addition"], 1));
            Assert.Contains("bad.jsonl", e.Message);
            Assert.DoesNotContain('\n', e.Message);

            e = Assert.Throws<EngineException>(() => MixedTask.Parse(["addition", "nosuchtask"], 1));
            Assert.Contains("nosuchtask", e.Message);
            e = Assert.Throws<EngineException>(() => MixedTask.ReadSpecs(Path.Combine(dir, "nomix.txt")));
            Assert.Contains("nomix.txt", e.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Task_specs_take_labels_options_label_noise_and_dataset_files()
    {
        string dir = Directory.CreateTempSubdirectory("pike").FullName;
        try
        {
            string data = Path.Combine(dir, "qa.jsonl");
            File.WriteAllLines(data, Enumerable.Range(0, 20).Select(i => $"{{\"prompt\": \"q{i}\", \"answer\": \"a{i}\"}}"));
            MixedTask mix = MixedTask.Parse(["easy=addition:max_digits=1", "addition:min_digits=3,max_digits=3,label_noise=1", data], 1);
            Assert.Equal(["easy", "addition", "qa"], mix.Labels);
            Assert.Matches(@"^\d\+\d=$", mix.Tasks[0].Example(DataSplit.Train, 0).Prompt);
            // Every training reference of the fully noisy task is another example's; the test split stays clean.
            int wrong = Enumerable.Range(0, 50).Count(i =>
            {
                TaskExample x = mix.Tasks[1].Example(DataSplit.Train, i);
                return !mix.Tasks[1].Score(x, x.Reference).Correct;
            });
            Assert.True(wrong > 40, $"{wrong} of 50 noisy references are wrong");
            Assert.All(Enumerable.Range(0, 20), i =>
            {
                TaskExample x = mix.Tasks[1].Example(DataSplit.Test, i);
                Assert.True(mix.Tasks[1].Score(x, x.Reference).Correct);
            });
            TaskExample fromMix = mix.Example(2, DataSplit.Train, 3);
            Assert.True(mix.Score(fromMix, fromMix.Reference).Correct);
            Assert.True(mix.Score(fromMix with { Prompt = fromMix.Prompt }, fromMix.Reference).Correct); // a copy (as RL rollouts make) keeps its task
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Multi_task_sft_mixes_every_task_per_batch_and_repeats_bit_for_bit()
    {
        float[] Run(MixerKind mixer, out Snapshot snapshot)
        {
            Accelerator acc = fx.Cpu;
            MixedTask tasks = MixedTask.Parse(["a=addition:max_digits=1", "s=sorting:min_length=2,max_length=3", "n=addition:min_digits=2,max_digits=2,label_noise=0.5"], 3);
            var tokenizer = new CharTokenizer(tasks.Alphabet);
            var config = ModelConfig.Gpt2(tokenizer.VocabSize, 16, 1, 2, 16) with { EosTokenIds = [tokenizer.EosTokenId!.Value] };
            using var model = new Transformer(acc, config);
            ModelInit.Initialize(model, 3, 0.1f);
            var sft = new SftOptions { Steps = 5, BatchSize = 8, WarmupSteps = 0, EvalExamples = 2 };
            using var source = new MultiTaskSource(tasks, new MixOptions { Tasks = "x;y", Mixer = mixer, Zeta1 = 0.5f, Zeta2 = 1, UpdateEvery = 2 }, sft.BatchSize);
            using var trainer = new SftTrainer(model, TaskCodec.For(tokenizer, config.EosTokenIds), tasks, sft, generator: null) { BatchSource = source };
            var metrics = new List<SftStepMetrics>();
            for (int i = 0; i < sft.Steps; i++)
            {
                metrics.Add(trainer.Step());
                Assert.Equal(sft.BatchSize, source.Counts.Sum());
                Assert.All(source.Counts, c => Assert.True(c >= 1));
                Assert.Equal(source.Counts[0], Convert.ToInt32(metrics[^1].MethodMetrics!["mix_batch_a"]));
            }

            snapshot = new Snapshot([.. source.Mixer.Weights], metrics.Select(m => m.Loss).ToArray());
            Assert.Equal(mixer != MixerKind.Uniform, metrics[0].MethodMetrics!.ContainsKey("mix_grad_sq_a"));
            Assert.Equal(mixer != MixerKind.Uniform, metrics[2].MethodMetrics!.ContainsKey("mix_cosine_mean"));
            Assert.False(metrics[1].MethodMetrics!.ContainsKey("mix_grad_sq_a")); // updates every 2 steps only
            return acc.ToArray(model.Params.All);
        }

        foreach (MixerKind mixer in Enum.GetValues<MixerKind>())
        {
            float[] first = Run(mixer, out var a), second = Run(mixer, out var b);
            Assert.True(first.Select(BitConverter.SingleToInt32Bits).SequenceEqual(second.Select(BitConverter.SingleToInt32Bits)), $"{mixer}: not bit-for-bit");
            Assert.Equal(a.Weights, b.Weights);
            Assert.Equal(a.Losses, b.Losses);
            if (mixer == MixerKind.Uniform)
            {
                Assert.All(a.Weights, w => Assert.Equal(1 / 3.0, w, 12));
            }
            else
            {
                Assert.Contains(a.Weights, w => Math.Abs(w - 1 / 3.0) > 1e-6);
            }
        }
    }

    private sealed record Snapshot(double[] Weights, double[] Losses);

    private static double Gaussian(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
}

using Engine.Core;
using Engine.Model;
using Engine.Tests.Backends;
using Engine.Tests.Support;
using Engine.Tokenizers;
using Engine.Training;

namespace Engine.Tests.Training;

/// <summary>
/// The non-finite guard: a NaN or Inf in the gradients (or the loss) skips the optimizer step,
/// leaving weights and moments bit for bit as they were, on every backend; SFT logs the skip and
/// stops after max_nonfinite_skips skips in a row.
/// </summary>
public sealed class NonFiniteGuardTests(BackendFixture fx) : IClassFixture<BackendFixture>
{
    private const int N = 1003;

    // ---- the AdamW op ----

    [Fact]
    public void AdamW_op_leaves_everything_untouched_for_a_non_finite_norm_on_the_cpu() => AdamWOpSkips(fx.Cpu);

    [Theory]
    [BackendDevices]
    public void AdamW_op_leaves_everything_untouched_for_a_non_finite_norm(string device) => AdamWOpSkips(fx.Device(device));

    private static void AdamWOpSkips(Accelerator acc)
    {
        float[] p0 = TestData.Uniform(1, N), g = TestData.Uniform(2, N), m0 = TestData.Uniform(3, N, 0.1f);
        float[] v0 = TestData.Uniform(4, N, 0.01f).Select(Math.Abs).ToArray();
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity })
        {
            foreach (float maxNorm in new[] { 1f, 0f }) // the guard holds with clipping off too
            {
                using DeviceBuffer p = acc.Put(p0), gb = acc.Put(g), m = acc.Put(m0), v = acc.Put(v0), norm = acc.Put([bad]);
                acc.AdamW(p.All, gb.All, m.All, v.All, norm.All, new AdamWSettings(1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, maxNorm), N);
                string what = $"norm^2 {bad}, max norm {maxNorm}";
                Assert.True(Bits(p0).SequenceEqual(Bits(acc.Get(p))), $"{what}: parameters changed");
                Assert.True(Bits(m0).SequenceEqual(Bits(acc.Get(m))), $"{what}: first moments changed");
                Assert.True(Bits(v0).SequenceEqual(Bits(acc.Get(v))), $"{what}: second moments changed");
            }
        }

        // The control: a finite norm does update (so the checks above can fail).
        using DeviceBuffer p2 = acc.Put(p0), g2 = acc.Put(g), m2 = acc.Put(m0), v2 = acc.Put(v0), n2 = acc.Put([4f]);
        acc.AdamW(p2.All, g2.All, m2.All, v2.All, n2.All, new AdamWSettings(1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1f), N);
        Assert.False(Bits(p0).SequenceEqual(Bits(acc.Get(p2))), "a finite step left the parameters as they were");
    }

    // ---- AdamWOptimizer ----

    [Fact]
    public void Optimizer_skips_and_reports_a_nan_or_inf_gradient_on_the_cpu() => OptimizerSkips(fx.Cpu);

    [Theory]
    [BackendDevices]
    public void Optimizer_skips_and_reports_a_nan_or_inf_gradient(string device) => OptimizerSkips(fx.Device(device));

    private static void OptimizerSkips(Accelerator acc)
    {
        using var model = new Transformer(acc, ModelConfig.Gpt2(12, 16, 1, 2, 8));
        ModelInit.Initialize(model, 5, 0.1f);
        using var optimizer = new AdamWOptimizer(model, new AdamWOptions { LearningRate = 1e-2f, MaxNonfiniteSkips = 3 });
        long total = model.Layout.TotalLength;
        float[] grads = TestData.Uniform(7, (int)total, 0.5f);

        // One good step first, so the moments are not zero.
        acc.Upload(model.Grads!.All, grads);
        Assert.True(optimizer.Step());
        Assert.Null(optimizer.LastSkipReason);
        Assert.Equal(1, optimizer.StepCount);

        long poisoned = model.Layout.Layers[0].QkvWeight.Offset + 5;
        foreach (var (bad, reason) in new[] { (float.NaN, "NaN"), (float.NegativeInfinity, "infinite") })
        {
            var (p, m, v) = (acc.ToArray(model.Params.All), acc.ToArray(optimizer.M.All), acc.ToArray(optimizer.V.All));
            float[] badGrads = (float[])grads.Clone();
            badGrads[poisoned] = bad;
            acc.Upload(model.Grads!.All, badGrads);
            Assert.False(optimizer.Step());
            Assert.True(optimizer.LastStepSkipped);
            Assert.Contains(reason, optimizer.LastSkipReason);
            Assert.Equal(1, optimizer.StepCount); // a skipped step is not counted (bias correction stays in step)
            Assert.False(float.IsFinite(optimizer.LastGradNorm()));
            Assert.True(Bits(p).SequenceEqual(Bits(acc.ToArray(model.Params.All))), $"{bad}: parameters changed");
            Assert.True(Bits(m).SequenceEqual(Bits(acc.ToArray(optimizer.M.All))), $"{bad}: first moments changed");
            Assert.True(Bits(v).SequenceEqual(Bits(acc.ToArray(optimizer.V.All))), $"{bad}: second moments changed");
        }

        Assert.Equal(2, optimizer.ConsecutiveSkips);

        // A finite loss with good gradients applies and resets the count; a non-finite loss skips.
        acc.Upload(model.Grads!.All, grads);
        Assert.True(optimizer.Step(loss: 1.5f));
        Assert.Equal(0, optimizer.ConsecutiveSkips);
        Assert.Equal(2, optimizer.StepCount);
        float[] before = acc.ToArray(model.Params.All);
        Assert.False(optimizer.Step(loss: float.NaN));
        Assert.Contains("loss", optimizer.LastSkipReason);
        Assert.True(Bits(before).SequenceEqual(Bits(acc.ToArray(model.Params.All))), "a NaN loss changed the parameters");

        // Three in a row: the third throws, naming the setting.
        Assert.False(optimizer.Step(loss: float.PositiveInfinity));
        var e = Assert.Throws<EngineException>(() => optimizer.Step(loss: float.NaN));
        Assert.Contains("max_nonfinite_skips = 3", e.Message);
        Assert.True(Bits(before).SequenceEqual(Bits(acc.ToArray(model.Params.All))), "the skipped steps changed the parameters");
    }

    // ---- SFT ----

    private sealed class CopyTask : ITask
    {
        public string Name => "copy";

        public string Alphabet => "0123456789=";

        public int MaxResponseLength => 1;

        public TaskExample Example(DataSplit split, long index) => new($"{index % 10}=", $"{index % 10}");

        public RewardResult Score(TaskExample example, string response) =>
            response == example.Reference ? new RewardResult(1, true) : new RewardResult(0, false);
    }

    [Fact]
    public void Sft_logs_a_skipped_step_then_stops_after_max_nonfinite_skips_in_a_row()
    {
        Accelerator acc = fx.Cpu;
        var tokenizer = new CharTokenizer("0123456789=");
        var config = ModelConfig.Gpt2(tokenizer.VocabSize, 16, 1, 2, 8) with { EosTokenIds = [tokenizer.EosTokenId!.Value] };
        using var model = new Transformer(acc, config);
        ModelInit.Initialize(model, 3, 0.1f);
        var options = new SftOptions { Steps = 10, BatchSize = 4, WarmupSteps = 0, EvalExamples = 2, MaxNonfiniteSkips = 2 };
        using var trainer = new SftTrainer(model, TaskCodec.For(tokenizer, config.EosTokenIds), new CopyTask(), options);

        Assert.Null(trainer.Step().Skipped);
        long poisoned = model.Layout.Layers[0].QkvWeight.Offset;
        float[] good = acc.ToArray(model.Params.All);
        float[] poison = (float[])good.Clone();
        poison[poisoned] = float.NaN; // every activation downstream, the loss and the gradients become NaN
        acc.Upload(model.Params.All, poison);
        SftStepMetrics skipped = trainer.Step();
        Assert.NotNull(skipped.Skipped);
        Assert.Equal(2, skipped.Step); // the batch is consumed: the data order stays that of the step count
        Assert.True(Bits(poison).SequenceEqual(Bits(acc.ToArray(model.Params.All))), "the skipped step changed the parameters");
        Assert.Equal(1, trainer.Optimizer.StepCount);

        acc.Upload(model.Params.All, good); // the fault passes: training goes on
        Assert.Null(trainer.Step().Skipped);
        Assert.Equal(2, trainer.Optimizer.StepCount);

        acc.Upload(model.Params.All, poison); // a lasting fault: the second skip in a row stops
        Assert.NotNull(trainer.Step().Skipped);
        var e = Assert.Throws<EngineException>(() => trainer.Step());
        Assert.Contains("max_nonfinite_skips = 2", e.Message);
    }

    private static int[] Bits(float[] x) => x.Select(BitConverter.SingleToInt32Bits).ToArray();
}

using Engine.Rl;

namespace Engine.Tests.Rl;

/// <summary>Group-relative advantages and DAPO's shaping (rl-core.md invariants).</summary>
public sealed class AdvantageTests
{
    [Theory]
    [InlineData(1.0)]
    [InlineData(0.1)]
    [InlineData(-1.0)]
    public void Equal_rewards_give_exactly_zero_advantages_and_are_dropped(double reward)
    {
        double[] rewards = Enumerable.Repeat(reward, 7).ToArray();
        var adv = new double[7];
        Advantages.Group(rewards, adv, normalizeByStd: true);
        Assert.All(adv, a => Assert.Equal(0.0, a));
        Advantages.Group(rewards, adv, normalizeByStd: false);
        Assert.All(adv, a => Assert.Equal(0.0, a));
        Assert.True(Advantages.AllEqual(rewards));
    }

    [Fact]
    public void Advantages_sum_to_zero_with_unit_sample_std()
    {
        double[] rewards = [1, 0, 0, 1, 1, -1, 0.5, 0];
        var adv = new double[rewards.Length];
        Advantages.Group(rewards, adv, normalizeByStd: true);
        Assert.Equal(0, adv.Sum(), 10);
        double mean = adv.Average();
        double std = Math.Sqrt(adv.Sum(a => (a - mean) * (a - mean)) / (adv.Length - 1));
        Assert.Equal(1, std, 4);
        Assert.False(Advantages.AllEqual(rewards));
    }

    [Fact]
    public void Dr_grpo_subtracts_the_mean_only()
    {
        double[] rewards = [1, 0, 0, 1];
        var adv = new double[4];
        Advantages.Group(rewards, adv, normalizeByStd: false);
        Assert.Equal([0.5, -0.5, -0.5, 0.5], adv);
    }

    [Fact]
    public void A_group_of_one_has_mean_zero_and_std_one()
    {
        var adv = new double[1];
        Advantages.Group([0.7], adv, normalizeByStd: true);
        Assert.Equal(0.7 / (1 + Advantages.Epsilon), adv[0], 12);
    }

    [Theory]
    [InlineData(10, 0)]
    [InlineData(12, 0)]
    [InlineData(13, -0.25)]
    [InlineData(16, -1)]
    [InlineData(17, -1)]
    public void Soft_overlong_punishment_follows_dapo(int length, double expected) =>
        Assert.Equal(expected, Advantages.SoftOverlongPenalty(length, maxLength: 16, buffer: 4), 12);
}

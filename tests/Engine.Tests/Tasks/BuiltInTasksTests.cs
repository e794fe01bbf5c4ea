using Engine.Core;

namespace Engine.Tests.Tasks;

/// <summary>The factory of built-in tasks: names, option keys and values, errors.</summary>
public sealed class BuiltInTasksTests
{
    [Fact]
    public void Every_name_creates_its_task_with_the_constructor_defaults()
    {
        Assert.Equal(["addition", "sorting", "countdown"], BuiltInTasks.Names);
        foreach (string name in BuiltInTasks.Names)
        {
            ITask task = BuiltInTasks.Create(name, seed: 42);
            Assert.Equal(name, task.Name);
            ITask direct = name switch
            {
                "addition" => new AdditionTask(seed: 42),
                "sorting" => new SortingTask(seed: 42),
                _ => new CountdownTask(seed: 42),
            };
            Assert.Equal(direct.GetType(), task.GetType());
            Assert.Equal(direct.MaxResponseLength, task.MaxResponseLength);
            for (long i = 0; i < 50; i++)
            {
                Assert.Equal(direct.Example(DataSplit.Test, i), task.Example(DataSplit.Test, i));
            }
        }

        Assert.IsType<SortingTask>(BuiltInTasks.Create(" Sorting "));
    }

    [Fact]
    public void Options_are_read_from_text_with_flexible_keys()
    {
        var add = (AdditionTask)BuiltInTasks.Create("addition", 1,
            new Dictionary<string, string> { ["min_digits"] = "2", ["MaxDigits"] = " 5 " });
        Assert.Equal((2, 5, 1UL), (add.MinDigits, add.MaxDigits, add.Seed));
        var sort = (SortingTask)BuiltInTasks.Create("sorting", 0, new Dictionary<string, string> { ["max-length"] = "9" });
        Assert.Equal((2, 9), (sort.MinLength, sort.MaxLength));
        var cd = (CountdownTask)BuiltInTasks.Create("countdown", 0, new Dictionary<string, string>
        {
            ["count"] = "4", ["max_number"] = "99", ["min_target"] = "10", ["max_target"] = "250", ["format_reward"] = "0.1",
        });
        Assert.Equal((4, 4, 1, 99, 10, 250, 0.1), (cd.MinCount, cd.MaxCount, cd.MinNumber, cd.MaxNumber, cd.MinTarget, cd.MaxTarget, cd.FormatReward));
        var mixed = (CountdownTask)BuiltInTasks.Create("countdown", 0, new Dictionary<string, string> { ["max_count"] = "4" });
        Assert.Equal((3, 4), (mixed.MinCount, mixed.MaxCount));
    }

    [Fact]
    public void Unknown_names_keys_and_bad_values_raise_clear_errors()
    {
        var e = Assert.Throws<EngineException>(() => BuiltInTasks.Create("multiplication"));
        Assert.Contains("multiplication", e.Message, StringComparison.Ordinal);
        Assert.Contains("addition, sorting, countdown", e.Message, StringComparison.Ordinal);

        e = Assert.Throws<EngineException>(() => BuiltInTasks.Create("addition", 0, new Dictionary<string, string> { ["max_length"] = "3" }));
        Assert.Contains("max_length", e.Message, StringComparison.Ordinal);
        Assert.Contains("min_digits, max_digits", e.Message, StringComparison.Ordinal);

        e = Assert.Throws<EngineException>(() => BuiltInTasks.Create("sorting", 0, new Dictionary<string, string> { ["max_length"] = "six" }));
        Assert.Contains("\"six\"", e.Message, StringComparison.Ordinal);

        e = Assert.Throws<EngineException>(() => BuiltInTasks.Create("countdown", 0, new Dictionary<string, string> { ["format_reward"] = "0,1" }));
        Assert.Contains("format_reward", e.Message, StringComparison.Ordinal);

        e = Assert.Throws<EngineException>(() => BuiltInTasks.Create("countdown", 0, new Dictionary<string, string> { ["max_count"] = "9" }));
        Assert.Contains("MaxCount", e.Message, StringComparison.Ordinal);

        e = Assert.Throws<EngineException>(() => BuiltInTasks.Create("addition", 0, new Dictionary<string, string> { ["max_digits"] = "4", ["MaxDigits"] = "5" }));
        Assert.Contains("twice", e.Message, StringComparison.Ordinal);

        Assert.Throws<ArgumentNullException>(() => BuiltInTasks.Create(null!));
    }
}

using Engine.Tests.Fuzzing;
using SharpFuzz;

// engine-fuzz TARGET             run under afl-fuzz (input on stdin, persistent mode)
// engine-fuzz TARGET DIR...      replay the files of each DIR (a corpus, or AFL's crashes/ and hangs/)
if (args.Length == 0 || !ParserTargets.All.ContainsKey(args[0]))
{
    Console.Error.WriteLine($"usage: Engine.Fuzz TARGET [DIR...]; targets: {string.Join(", ", ParserTargets.All.Keys)}");
    return 2;
}

string target = args[0];
if (args.Length > 1)
{
    int files = 0, loaded = 0;
    foreach (string file in args.Skip(1).SelectMany(d => Directory.GetFiles(d)).Order(StringComparer.Ordinal))
    {
        files++;
        string? error = ParserTargets.Run(target, File.ReadAllBytes(file));
        loaded += error is null ? 1 : 0;
        Console.WriteLine($"{Path.GetFileName(file)}: {error ?? "loaded"}");
    }

    Console.WriteLine($"{target}: {files} inputs, {loaded} loaded, {files - loaded} refused with an EngineException, 0 other exceptions");
    return 0;
}

Fuzzer.Run(stream =>
{
    using var buffer = new MemoryStream();
    stream.CopyTo(buffer);
    ParserTargets.Run(target, buffer.ToArray()); // anything but an EngineException escapes: AFL records a crash
});
return 0;

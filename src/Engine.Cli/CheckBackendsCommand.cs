using System.CommandLine;
using Engine.Core;
using Engine.Tools;

namespace Engine.Cli;

/// <summary><c>engine check-backends</c>: every op and a few train steps on a device against the CPU backend (see <see cref="BackendCheck"/>).</summary>
internal static class CheckBackendsCommand
{
    public static Command Create()
    {
        var device = new Option<string?>("--device") { Description = "the device to check: opencl[:N], cuda[:N], auto or cpu (default: every non-CPU device)" };
        var boundScale = new Option<double>("--bound-scale")
        {
            Description = "multiply every error bound (e.g. 300 under ENGINE_CUDA_PRECISION=tf32, whose GEMMs round inputs to 10-bit mantissas)",
            DefaultValueFactory = _ => 1.0,
        };
        var command = new Command("check-backends", "Run every op, train steps and generation on a device and compare each output with the CPU backend; exit 1 if any exceeds its bound.")
        {
            device, boundScale,
        };
        command.SetAction(r => CommandLine.Guard(() =>
        {
            double scale = r.GetValue(boundScale);
            if (!(scale > 0))
            {
                throw new EngineException($"--bound-scale must be positive, got {scale}");
            }

            string? spec = r.GetValue(device);
            IReadOnlyList<DeviceInfo> devices = spec is null
                ? [.. Devices.List().Where(d => d.Spec != Devices.List()[0].Spec)]
                : [Devices.Resolve(spec)];
            if (devices.Count == 0)
            {
                throw new EngineException($"no device to check besides the CPU (devices: {string.Join(", ", Devices.List().Select(d => d.Spec))}); name one with --device");
            }

            int failed = 0, total = 0;
            using Accelerator cpu = Backends.Registry.Open(Devices.List()[0].Spec);
            foreach (DeviceInfo info in devices)
            {
                Console.WriteLine($"checking {info} ({info.Details}) against {cpu.Info}");
                using Accelerator acc = Backends.Registry.Open(info.Spec);
                var rows = BackendCheck.Run(cpu, acc, scale, row => Console.WriteLine($"{info.Spec,-9} {row}"));
                failed += rows.Count(row => !row.Passed);
                total += rows.Count;
            }

            Console.WriteLine($"check-backends: {total - failed} of {total} outputs within bounds{(failed > 0 ? $", {failed} FAILED" : "")}");
            return failed == 0 ? 0 : 1;
        }));
        return command;
    }
}

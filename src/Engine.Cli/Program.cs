using Engine.Kernels.Cuda;
using Engine.Kernels.OpenCL;

namespace Engine.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        // The GPU backends are plug-ins that the engine finds next to its assembly; the CLI carries
        // them and registers them itself, so that the single-file (trimmed) CLI has them too.
        Backends.Register(new CudaProvider(), new ClProvider());
        EngineTelemetry.LoggerFactory = StderrLogging.Instance;
        return CommandLine.Run(args);
    }
}

namespace Engine.Util;

/// <summary>Process-level resource figures for reports and benchmark lines.</summary>
internal static class ProcessStats
{
    /// <summary>Peak resident set size in MiB (VmHWM on Linux, the peak working set elsewhere).</summary>
    public static double PeakRssMb()
    {
        try
        {
            if (File.Exists("/proc/self/status"))
            {
                foreach (string line in File.ReadLines("/proc/self/status"))
                {
                    if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    {
                        string kb = line["VmHWM:".Length..].Trim().Split(' ')[0];
                        return long.Parse(kb, System.Globalization.CultureInfo.InvariantCulture) / 1024.0;
                    }
                }
            }
        }
        catch (IOException)
        {
            // Fall through to the portable figure.
        }

        return System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024.0);
    }
}

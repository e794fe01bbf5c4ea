using Engine.Tests.Backends;

namespace Engine.Tests.Support;

/// <summary>
/// A fact that needs something outside the repository (a file next to it, a program on PATH). When it is
/// missing the test is skipped locally with <c>reason</c>, and fails in CI (CI=true), where .ci/run provides
/// it: a missing prerequisite never passes silently there.
/// </summary>
public abstract class NeedsFactAttribute : FactAttribute
{
    /// <summary>Sets Skip when <paramref name="available"/> is false outside CI.</summary>
    protected NeedsFactAttribute(bool available, string reason)
    {
        if (!available && !BackendDevices.IsCi)
        {
            Skip = $"{reason} (local run; in CI, CI=true, this fails instead)";
        }
    }
}

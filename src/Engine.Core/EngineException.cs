namespace Engine.Core;

/// <summary>
/// The error the engine raises for bad input or an unusable environment: malformed checkpoints,
/// wrong shapes, invalid options, missing devices. The message names the problem in one line.
/// </summary>
public class EngineException : Exception
{
    /// <summary>Creates an exception with a message that names the problem.</summary>
    public EngineException(string message) : base(message)
    {
    }

    /// <summary>Creates an exception with a message and the underlying cause.</summary>
    public EngineException(string message, Exception innerException) : base(message, innerException)
    {
    }

    /// <summary>Creates an exception with no message (prefer the overloads that name the problem).</summary>
    public EngineException()
    {
    }
}

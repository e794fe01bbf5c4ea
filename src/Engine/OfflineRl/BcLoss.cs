using Engine.Core;

namespace Engine.OfflineRl;

/// <summary>Names of the behaviour-cloning losses (the loss head itself is the device op <see cref="Accelerator.BehaviourCloningLoss"/>).</summary>
internal static class BcLossHead
{
    /// <summary>Parses a loss name (mse, mae, ce).</summary>
    public static BcLoss Parse(string name) => name switch
    {
        "mse" => BcLoss.Mse,
        "mae" => BcLoss.Mae,
        "ce" or "cross-entropy" => BcLoss.CrossEntropy,
        _ => throw new EngineException($"unknown BC loss '{name}' (known: mse, mae, ce)"),
    };
}

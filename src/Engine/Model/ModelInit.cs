using Engine.Util;

namespace Engine.Model;

/// <summary>Random initialisation for models trained from scratch (GPT-2's scheme).</summary>
internal static class ModelInit
{
    /// <summary>
    /// Matrices and embeddings ~ N(0, std), output projections ~ N(0, std / sqrt(2L)) (GPT-2's
    /// residual scaling), biases 0, norm weights 1. Deterministic in <paramref name="seed"/>.
    /// </summary>
    public static void Initialize(Transformer model, ulong seed, float std = 0.02f)
    {
        var rng = new SplitMix64(seed);
        float residualStd = std / MathF.Sqrt(2f * model.Config.Layers);
        foreach (ParamTensor t in model.Layout.Tensors)
        {
            var data = new float[t.Length];
            if (t.Name.Contains("norm", StringComparison.Ordinal) && t.Name.EndsWith(".weight", StringComparison.Ordinal))
            {
                Array.Fill(data, 1f);
            }
            else if (t.Shape.Length == 2)
            {
                float s = t.Name.EndsWith("attn_out.weight", StringComparison.Ordinal) ||
                          t.Name.EndsWith("mlp_out.weight", StringComparison.Ordinal) ? residualStd : std;
                for (long i = 0; i < data.Length; i++)
                {
                    data[i] = (float)(rng.NextGaussian() * s);
                }
            }

            model.Acc.Upload(model.P(t), data);
        }
    }
}

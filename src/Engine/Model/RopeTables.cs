namespace Engine.Model;

/// <summary>
/// Cos/sin tables [P, D/2] for RoPE, computed the way Hugging Face does in float32
/// (inv_freq = 1 / theta^(2j/D), angle = position * inv_freq), with Llama 3 and linear scaling.
/// </summary>
internal static class RopeTables
{
    public static (float[] Cos, float[] Sin) Compute(ModelConfig config)
    {
        int half = config.HeadDim / 2;
        float[] invFreq = InverseFrequencies(config);
        var cos = new float[(long)config.MaxPositions * half];
        var sin = new float[cos.Length];
        for (int p = 0; p < config.MaxPositions; p++)
        {
            for (int j = 0; j < half; j++)
            {
                float angle = p * invFreq[j];
                cos[(long)p * half + j] = (float)Math.Cos(angle);
                sin[(long)p * half + j] = (float)Math.Sin(angle);
            }
        }

        return (cos, sin);
    }

    public static float[] InverseFrequencies(ModelConfig config)
    {
        int d = config.HeadDim, half = d / 2;
        var inv = new float[half];
        for (int j = 0; j < half; j++)
        {
            float exponent = (float)(2 * j) / d;
            inv[j] = 1f / (float)Math.Pow((float)config.RopeTheta, exponent);
        }

        if (config.RopeScaling is { } s)
        {
            for (int j = 0; j < half; j++)
            {
                inv[j] = s.Type switch
                {
                    "linear" => (float)(inv[j] / s.Factor),
                    "llama3" => Llama3(inv[j], s),
                    _ => inv[j],
                };
            }
        }

        return inv;
    }

    private static float Llama3(float invFreq, RopeScaling s)
    {
        double lowFreqWavelen = s.OriginalMaxPositions / s.LowFreqFactor;
        double highFreqWavelen = s.OriginalMaxPositions / s.HighFreqFactor;
        double wavelen = 2 * Math.PI / invFreq;
        if (wavelen < highFreqWavelen)
        {
            return invFreq;
        }

        if (wavelen > lowFreqWavelen)
        {
            return (float)(invFreq / s.Factor);
        }

        double smooth = (s.OriginalMaxPositions / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
        return (float)((1 - smooth) * invFreq / s.Factor + smooth * invFreq);
    }
}

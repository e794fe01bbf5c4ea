namespace Engine.Util;

/// <summary>
/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"), a counter-based
/// generator: the output is a pure function of (key, counter), so the random number of a sample
/// depends only on (seed, sequence id, position) and never on batch composition or scheduling.
/// </summary>
internal static class Philox
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>The 4 x 32-bit block for a 4-word counter and a 2-word key.</summary>
    public static (uint X0, uint X1, uint X2, uint X3) Block(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int round = 0; round < 10; round++)
        {
            ulong p0 = (ulong)M0 * c0;
            ulong p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0;
            uint hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
            k0 += W0;
            k1 += W1;
        }

        return (c0, c1, c2, c3);
    }

    /// <summary>
    /// A uniform number in [0, 1) (24 random bits, exact in float) for (seed, stream, index, position).
    /// </summary>
    /// <param name="seed">The run's seed (the key).</param>
    /// <param name="stream">Which kind of draw (sampling, shuffling ...), so streams never collide.</param>
    /// <param name="index">Sequence id (64 bits).</param>
    /// <param name="position">Token position.</param>
    public static float Uniform(ulong seed, uint stream, ulong index, uint position)
    {
        var (x0, _, _, _) = Block((uint)index, (uint)(index >> 32), position, stream, (uint)seed, (uint)(seed >> 32));
        return (x0 >> 8) * (1f / (1 << 24));
    }
}

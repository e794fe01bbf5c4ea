using Engine.Core;

namespace Engine.Model;

/// <summary>
/// The buffers of one block's q/k norm (Qwen3: RMSNorm over each query and key head of D values,
/// between the qkv projection and RoPE), for up to R rows. The norm runs on the existing row ops:
/// the q and k heads are gathered into contiguous [rows, D] blocks (<see cref="QRaw"/>, <see cref="KRaw"/>),
/// normalised with the row RMSNorm, and the block's qkv is reassembled by one more gather from
/// <see cref="Source"/> = [raw qkv | normalised q | normalised k] (values copied, so bit-exact). The
/// backward is the transpose: scatter-adds (the embedding backward) into zeroed buffers around the
/// row RMSNorm backward. Row indices depend only on R, so any prefix of n &lt;= R rows is valid.
/// </summary>
internal sealed class QkNormActivations
{
    public required Tensor Source { get; init; }        // [R (Hq + 2Hkv) + R Hq + R Hkv, D]: Raw | QNormed | KNormed
    public required Tensor Raw { get; init; }           // [R, (Hq + 2Hkv) D] projection output, before the norm
    public required Tensor QNormed { get; init; }       // [R Hq, D]
    public required Tensor KNormed { get; init; }       // [R Hkv, D]
    public required Tensor QRaw { get; init; }          // [R Hq, D] query heads gathered from Raw
    public required Tensor KRaw { get; init; }          // [R Hkv, D] key heads gathered from Raw
    public Tensor QRstd { get; init; }                  // [R Hq] (forward only)
    public Tensor KRstd { get; init; }                  // [R Hkv] (forward only)
    public required Tensor QRows { get; init; }         // [R Hq] int: row of Raw (as [R (Hq + 2Hkv), D]) of each query head
    public required Tensor KRows { get; init; }         // [R Hkv] int: row of Raw of each key head
    public required Tensor AssembleRows { get; init; }  // [R (Hq + 2Hkv)] int: row of Source that each qkv head row copies
}

/// <summary>Allocates <see cref="QkNormActivations"/> for every layer (and, for training, one set of gradient buffers).</summary>
internal sealed class QkNormPlan : IDisposable
{
    private readonly DeviceBuffer floats;
    private readonly DeviceBuffer ints;

    public QkNormPlan(Accelerator acc, ModelConfig config, int rows, int layers, bool backward)
    {
        int hq = config.Heads, hkv = config.KvHeads, heads = hq + 2 * hkv, d = config.HeadDim;
        long r = rows;
        long sourceRows = r * heads + r * hq + r * hkv;
        long perLayer = Round(sourceRows * d) + Round(r * hq * d) + Round(r * hkv * d) + Round(r * hq) + Round(r * hkv);
        long gradients = backward ? Round(sourceRows * d) + Round(r * hq * d) + Round(r * hkv * d) : 0;
        floats = acc.Allocate(perLayer * layers + gradients);
        ints = acc.Allocate(Round(r * hq) + Round(r * hkv) + r * heads, DType.I32);

        // Index tables: query head h of row t is row t*heads + h of Raw, key head h is row t*heads + hq + h;
        // the reassembled row t*heads + h copies the normalised head, or Raw's own row for values.
        var qRows = new int[r * hq];
        var kRows = new int[r * hkv];
        var assemble = new int[r * heads];
        for (int t = 0; t < rows; t++)
        {
            for (int h = 0; h < heads; h++)
            {
                int row = t * heads + h;
                if (h < hq)
                {
                    qRows[t * hq + h] = row;
                    assemble[row] = checked((int)(r * heads + t * hq + h));
                }
                else if (h < hq + hkv)
                {
                    kRows[t * hkv + h - hq] = row;
                    assemble[row] = checked((int)(r * heads + r * hq + t * hkv + h - hq));
                }
                else
                {
                    assemble[row] = row;
                }
            }
        }

        Tensor qIndex = ints.Slice(0, qRows.Length), kIndex = ints.Slice(Round(r * hq), kRows.Length);
        Tensor assembleIndex = ints.Slice(Round(r * hq) + Round(r * hkv), assemble.Length);
        acc.Upload(qIndex, qRows);
        acc.Upload(kIndex, kRows);
        acc.Upload(assembleIndex, assemble);

        long offset = 0;
        Tensor Take(long length)
        {
            Tensor t = floats.Slice(offset, length);
            offset += Round(length);
            return t;
        }

        QkNormActivations Block(bool withRstd)
        {
            Tensor source = Take(sourceRows * d);
            return new QkNormActivations
            {
                Source = source,
                Raw = source.Slice(0, r * heads * d),
                QNormed = source.Slice(r * heads * d, r * hq * d),
                KNormed = source.Slice(r * (heads + hq) * d, r * hkv * d),
                QRaw = Take(r * hq * d),
                KRaw = Take(r * hkv * d),
                QRstd = withRstd ? Take(r * hq) : default,
                KRstd = withRstd ? Take(r * hkv) : default,
                QRows = qIndex,
                KRows = kIndex,
                AssembleRows = assembleIndex,
            };
        }

        Layers = Enumerable.Range(0, layers).Select(_ => Block(withRstd: true)).ToArray();
        Gradients = backward ? Block(withRstd: false) : null;
        Bytes = floats.Bytes + ints.Bytes;
    }

    /// <summary>Each layer's buffers.</summary>
    public QkNormActivations[] Layers { get; }

    /// <summary>Gradient buffers shared by the layers' backward passes (null without a backward).</summary>
    public QkNormActivations? Gradients { get; }

    /// <summary>Device bytes held.</summary>
    public long Bytes { get; }

    public void Dispose()
    {
        floats.Dispose();
        ints.Dispose();
    }

    private static long Round(long length) => (length + 15) / 16 * 16;
}

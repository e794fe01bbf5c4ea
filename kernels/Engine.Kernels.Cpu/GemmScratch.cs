using System.Runtime.InteropServices;

namespace Engine.Kernels.Cpu;

/// <summary>
/// Per-thread native scratch of the GEMM: packed panels of A and B, one edge tile, the transposed
/// small-m operand. 64-byte aligned, grown lazily, never shrunk, so a call allocates nothing once
/// the largest shape has been seen.
/// </summary>
/// <remarks>
/// Thread-static rather than indexed by the pool's worker index: a loop started from inside a
/// worker runs inline with worker index 0, so two workers that each run a nested GEMM would share
/// "worker 0" scratch. Per-thread scratch cannot collide. Packed B belongs to the calling thread
/// and is only read by the workers while the call runs. The memory is released by the finalizer
/// once the owning thread has ended and the object is collected.
/// </remarks>
internal sealed unsafe class GemmScratch
{
    [ThreadStatic]
    private static GemmScratch? current;

    private Block packedA;
    private Block packedB;
    private Block tile;
    private Block operand;

    ~GemmScratch()
    {
        packedA.Free();
        packedB.Free();
        tile.Free();
        operand.Free();
    }

    /// <summary>The calling thread's scratch.</summary>
    public static GemmScratch Current => current ??= new GemmScratch();

    /// <summary>Room for this thread's packed block of A (MC x KC floats).</summary>
    public float* PackedA(long floats) => packedA.Ensure(floats);

    /// <summary>Room for the packed block of B (KC x NC floats), shared read-only with the workers.</summary>
    public float* PackedB(long floats) => packedB.Ensure(floats);

    /// <summary>Room for one MR x NR edge tile.</summary>
    public float* Tile(long floats) => tile.Ensure(floats);

    /// <summary>Room for a re-laid-out operand of the small-m path.</summary>
    public float* Operand(long floats) => operand.Ensure(floats);

    private struct Block
    {
        private float* data;
        private long capacity;

        public float* Ensure(long floats)
        {
            if (floats > capacity)
            {
                Free();
                // Round up to whole 4 KiB pages' worth so slowly growing shapes do not reallocate each call.
                long size = (Math.Max(floats, 16) + 1023) & ~1023L;
                data = (float*)NativeMemory.AlignedAlloc((nuint)(size * sizeof(float)), 64);
                capacity = size;
            }

            return data;
        }

        public void Free()
        {
            if (data != null)
            {
                NativeMemory.AlignedFree(data);
                data = null;
                capacity = 0;
            }
        }
    }
}

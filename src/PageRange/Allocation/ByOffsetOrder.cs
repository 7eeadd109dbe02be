namespace PageRange.Allocation;

/// <summary>Live buffers keyed by offset: the lookup behind commit, abort and free (binder's tree keyed by offset).</summary>
internal readonly struct ByOffsetOrder : IExtentOrder
{
    public static ref TreeLinks Links(ref Extent extent) => ref extent.ByOffset;

    public static int Compare(in Extent x, in Extent y) => x.Offset.CompareTo(y.Offset);
}

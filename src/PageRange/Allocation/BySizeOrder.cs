namespace PageRange.Allocation;

/// <summary>
/// Free ranges keyed by (size, offset): a lower bound on (size, 0) finds the smallest range that fits, ties going to
/// the lowest offset (binder's Rust <c>free_tree</c>).
/// </summary>
internal readonly struct BySizeOrder : IExtentOrder
{
    public static ref TreeLinks Links(ref Extent extent) => ref extent.BySize;

    public static int Compare(in Extent x, in Extent y)
    {
        int bySize = x.Size.CompareTo(y.Size);
        return bySize != 0 ? bySize : x.Offset.CompareTo(y.Offset);
    }
}

namespace PageRange.Allocation;

/// <summary>
/// Which links and which key an <see cref="ExtentTree{TOrder}"/> uses. Implemented by empty structs so the JIT
/// specialises the tree code for each order and inlines the key comparison.
/// </summary>
internal interface IExtentOrder
{
    /// <summary>The links of <paramref name="extent"/> in this order's tree.</summary>
    static abstract ref TreeLinks Links(ref Extent extent);

    /// <summary>Compares two extents by this order's key; keys are unique among the extents of one tree.</summary>
    static abstract int Compare(in Extent x, in Extent y);
}

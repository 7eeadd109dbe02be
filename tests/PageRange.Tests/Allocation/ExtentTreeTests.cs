using CsCheck;
using PageRange.Allocation;

namespace PageRange.Tests.Allocation;

/// <summary>The pooled AVL tree against <see cref="SortedSet{T}"/>: same contents, same lookups, always balanced.</summary>
public sealed class ExtentTreeTests
{
    private const int Nil = ExtentTree<BySizeOrder>.Nil;

    [Fact]
    public void InsertRemoveLookups_RandomKeys_MatchSortedSet() =>
        Gen.Select(Gen.Int[0, 40], Gen.Int[0, 63]).Array[1, 300].Sample(steps =>
        {
            // Keys are (size, offset) with unique offsets; slot i of the pool holds offset 8*i.
            var extents = new Extent[64];
            var inTree = new bool[64];
            var model = new SortedSet<(long Size, long Offset)>();
            int root = Nil;
            foreach ((int size, int slot) in steps)
            {
                if (inTree[slot])
                {
                    root = ExtentTree<BySizeOrder>.Remove(extents, root, slot);
                    Assert.True(model.Remove((extents[slot].Size, extents[slot].Offset)));
                    inTree[slot] = false;
                }
                else
                {
                    extents[slot] = new Extent { Offset = slot * 8L, Size = size * 8L };
                    root = ExtentTree<BySizeOrder>.Insert(extents, root, slot);
                    Assert.True(model.Add((extents[slot].Size, extents[slot].Offset)));
                    inTree[slot] = true;
                }

                Assert.Equal(model.Count, ExtentTree<BySizeOrder>.Validate(extents, root));
                // Lower bound on (size, 0): the best fit for a request of that size.
                var probe = new Extent { Size = size * 8L, Offset = 0 };
                int fit = ExtentTree<BySizeOrder>.LowerBound(extents, root, in probe);
                (long Size, long Offset) expected = model.GetViewBetween((size * 8L, 0), (long.MaxValue, long.MaxValue)).FirstOrDefault((-1, -1));
                Assert.Equal(expected, fit == Nil ? (-1, -1) : (extents[fit].Size, extents[fit].Offset));
                // Exact find by key.
                var key = new Extent { Size = extents[slot].Size, Offset = extents[slot].Offset };
                Assert.Equal(inTree[slot] ? slot : Nil, ExtentTree<BySizeOrder>.Find(extents, root, in key));
            }
        }, iter: 300, threads: 2);

    [Fact]
    public void Insert_AscendingKeys_StaysLogarithmic()
    {
        const int Count = 4096;
        var extents = new Extent[Count];
        int root = Nil;
        for (int i = 0; i < Count; i++)
        {
            extents[i] = new Extent { Offset = i * 8L, Size = 8 };
            root = ExtentTree<ByOffsetOrder>.Insert(extents, root, i);
        }
        Assert.Equal(Count, ExtentTree<ByOffsetOrder>.Validate(extents, root));
        // An AVL tree of 4096 nodes is at most 1.44 * log2(4097) high, about 17.
        Assert.InRange(extents[root].ByOffset.Height, 13, 17);
        for (int i = 0; i < Count; i += 2)
        {
            root = ExtentTree<ByOffsetOrder>.Remove(extents, root, i);
        }
        Assert.Equal(Count / 2, ExtentTree<ByOffsetOrder>.Validate(extents, root));
        var probe = new Extent { Offset = 16 };
        Assert.Equal(Nil, ExtentTree<ByOffsetOrder>.Find(extents, root, in probe));
        probe.Offset = 24;
        Assert.Equal(3, ExtentTree<ByOffsetOrder>.Find(extents, root, in probe));
    }
}

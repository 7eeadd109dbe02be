namespace PageRange.Allocation;

/// <summary>An extent's links in one AVL tree of <see cref="ExtentTree{TOrder}"/>: indices into the extent pool.</summary>
internal struct TreeLinks
{
    /// <summary>The left child, or <see cref="ExtentTree{TOrder}.Nil"/>.</summary>
    internal int Left;

    /// <summary>The right child, or <see cref="ExtentTree{TOrder}.Nil"/>.</summary>
    internal int Right;

    /// <summary>The height of the subtree rooted here; a leaf has height 1.</summary>
    internal int Height;
}

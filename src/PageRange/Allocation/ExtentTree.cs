using System.Diagnostics;

namespace PageRange.Allocation;

/// <summary>
/// An AVL tree threaded through pooled <see cref="Extent"/>s: nodes are indices into the pool and the links live in
/// the extents themselves (<see cref="IExtentOrder.Links"/>), so inserting and removing never allocates.
/// </summary>
/// <remarks>
/// Binder uses red-black trees; any balanced tree gives the same placement because the keys are unique and the
/// searches are exact or lower bounds. AVL is chosen because it is short to write correctly with recursion (depth is
/// at most about 1.44 log2 n, so about 40 frames for a 1 GiB area of 8-byte buffers). The caller holds the
/// allocator lock and must not change an extent's key while the extent is in the tree.
/// </remarks>
/// <typeparam name="TOrder">The links and key the tree uses.</typeparam>
internal static class ExtentTree<TOrder>
    where TOrder : struct, IExtentOrder
{
    /// <summary>The null index.</summary>
    internal const int Nil = -1;

    /// <summary>Inserts <paramref name="node"/> and returns the new root.</summary>
    internal static int Insert(Span<Extent> nodes, int root, int node)
    {
        if (root == Nil)
        {
            ref TreeLinks links = ref TOrder.Links(ref nodes[node]);
            links.Left = Nil;
            links.Right = Nil;
            links.Height = 1;
            return node;
        }

        ref TreeLinks rootLinks = ref TOrder.Links(ref nodes[root]);
        int comparison = TOrder.Compare(in nodes[node], in nodes[root]);
        Debug.Assert(comparison != 0, "Keys are unique within a tree.");
        if (comparison < 0)
        {
            rootLinks.Left = Insert(nodes, rootLinks.Left, node);
        }
        else
        {
            rootLinks.Right = Insert(nodes, rootLinks.Right, node);
        }
        return Rebalance(nodes, root);
    }

    /// <summary>Removes <paramref name="node"/>, which must be in the tree, and returns the new root.</summary>
    internal static int Remove(Span<Extent> nodes, int root, int node)
    {
        Debug.Assert(root != Nil, "The node to remove is in the tree.");
        ref TreeLinks rootLinks = ref TOrder.Links(ref nodes[root]);
        if (root == node)
        {
            if (rootLinks.Left == Nil)
            {
                return rootLinks.Right;
            }
            if (rootLinks.Right == Nil)
            {
                return rootLinks.Left;
            }
            // Nodes are identities (other extents refer to them by index), so splice the successor into this place
            // instead of copying its key over.
            int right = RemoveMin(nodes, rootLinks.Right, out int successor);
            ref TreeLinks successorLinks = ref TOrder.Links(ref nodes[successor]);
            successorLinks.Left = rootLinks.Left;
            successorLinks.Right = right;
            return Rebalance(nodes, successor);
        }

        if (TOrder.Compare(in nodes[node], in nodes[root]) < 0)
        {
            rootLinks.Left = Remove(nodes, rootLinks.Left, node);
        }
        else
        {
            rootLinks.Right = Remove(nodes, rootLinks.Right, node);
        }
        return Rebalance(nodes, root);
    }

    /// <summary>The node whose key equals <paramref name="probe"/>'s, or <see cref="Nil"/>.</summary>
    internal static int Find(Span<Extent> nodes, int root, in Extent probe)
    {
        int node = root;
        while (node != Nil)
        {
            int comparison = TOrder.Compare(in probe, in nodes[node]);
            if (comparison == 0)
            {
                return node;
            }
            TreeLinks links = TOrder.Links(ref nodes[node]);
            node = comparison < 0 ? links.Left : links.Right;
        }
        return Nil;
    }

    /// <summary>The node with the smallest key not less than <paramref name="probe"/>'s, or <see cref="Nil"/>.</summary>
    internal static int LowerBound(Span<Extent> nodes, int root, in Extent probe)
    {
        int best = Nil;
        int node = root;
        while (node != Nil)
        {
            TreeLinks links = TOrder.Links(ref nodes[node]);
            if (TOrder.Compare(in nodes[node], in probe) >= 0)
            {
                best = node;
                node = links.Left;
            }
            else
            {
                node = links.Right;
            }
        }
        return best;
    }

    /// <summary>
    /// Checks order, heights and balance of the subtree at <paramref name="root"/>, for tests.
    /// </summary>
    /// <returns>The number of nodes.</returns>
    /// <exception cref="InvalidOperationException">The tree is not a valid AVL tree.</exception>
    internal static int Validate(Span<Extent> nodes, int root) => ValidateSubtree(nodes, root, Nil, Nil, out _);

    private static int ValidateSubtree(Span<Extent> nodes, int root, int lower, int upper, out int height)
    {
        if (root == Nil)
        {
            height = 0;
            return 0;
        }
        if ((lower != Nil && TOrder.Compare(in nodes[lower], in nodes[root]) >= 0)
            || (upper != Nil && TOrder.Compare(in nodes[root], in nodes[upper]) >= 0))
        {
            throw new InvalidOperationException($"{typeof(TOrder).Name} tree: node {root} is out of order.");
        }
        TreeLinks links = TOrder.Links(ref nodes[root]);
        int count = 1 + ValidateSubtree(nodes, links.Left, lower, root, out int left)
            + ValidateSubtree(nodes, links.Right, root, upper, out int right);
        height = Math.Max(left, right) + 1;
        if (links.Height != height || Math.Abs(left - right) > 1)
        {
            throw new InvalidOperationException(
                $"{typeof(TOrder).Name} tree: node {root} has height {links.Height}, children {left} and {right}.");
        }
        return count;
    }

    private static int RemoveMin(Span<Extent> nodes, int root, out int min)
    {
        ref TreeLinks links = ref TOrder.Links(ref nodes[root]);
        if (links.Left == Nil)
        {
            min = root;
            return links.Right;
        }
        links.Left = RemoveMin(nodes, links.Left, out min);
        return Rebalance(nodes, root);
    }

    private static int Height(Span<Extent> nodes, int node) => node == Nil ? 0 : TOrder.Links(ref nodes[node]).Height;

    private static void UpdateHeight(Span<Extent> nodes, int node)
    {
        ref TreeLinks links = ref TOrder.Links(ref nodes[node]);
        links.Height = Math.Max(Height(nodes, links.Left), Height(nodes, links.Right)) + 1;
    }

    /// <summary>Restores the AVL balance at <paramref name="node"/>, whose subtrees are balanced, and returns the subtree's new root.</summary>
    private static int Rebalance(Span<Extent> nodes, int node)
    {
        ref TreeLinks links = ref TOrder.Links(ref nodes[node]);
        int left = Height(nodes, links.Left);
        int right = Height(nodes, links.Right);
        if (left > right + 1)
        {
            ref TreeLinks leftLinks = ref TOrder.Links(ref nodes[links.Left]);
            if (Height(nodes, leftLinks.Left) < Height(nodes, leftLinks.Right))
            {
                links.Left = RotateLeft(nodes, links.Left);
            }
            return RotateRight(nodes, node);
        }
        if (right > left + 1)
        {
            ref TreeLinks rightLinks = ref TOrder.Links(ref nodes[links.Right]);
            if (Height(nodes, rightLinks.Right) < Height(nodes, rightLinks.Left))
            {
                links.Right = RotateRight(nodes, links.Right);
            }
            return RotateLeft(nodes, node);
        }
        links.Height = Math.Max(left, right) + 1;
        return node;
    }

    private static int RotateRight(Span<Extent> nodes, int node)
    {
        ref TreeLinks links = ref TOrder.Links(ref nodes[node]);
        int pivot = links.Left;
        ref TreeLinks pivotLinks = ref TOrder.Links(ref nodes[pivot]);
        links.Left = pivotLinks.Right;
        pivotLinks.Right = node;
        UpdateHeight(nodes, node);
        UpdateHeight(nodes, pivot);
        return pivot;
    }

    private static int RotateLeft(Span<Extent> nodes, int node)
    {
        ref TreeLinks links = ref TOrder.Links(ref nodes[node]);
        int pivot = links.Right;
        ref TreeLinks pivotLinks = ref TOrder.Links(ref nodes[pivot]);
        links.Right = pivotLinks.Left;
        pivotLinks.Left = node;
        UpdateHeight(nodes, node);
        UpdateHeight(nodes, pivot);
        return pivot;
    }
}

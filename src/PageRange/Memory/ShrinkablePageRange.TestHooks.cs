namespace PageRange.Memory;

/// <summary>Read-only views of the page states for tests.</summary>
internal sealed partial class ShrinkablePageRange
{
    /// <summary>The state of every page, read together under the range lock.</summary>
    /// <exception cref="InvalidOperationException">A page is Free but on the LRU (invariant A.10.3).</exception>
    internal PageState[] GetPageStates()
    {
        var states = new PageState[_pageCount];
        _lock.Enter();
        try
        {
            for (int i = 0; i < _pageCount; i++)
            {
                if (PageOrNull(i) is not { } page)
                {
                    states[i] = PageState.Free;
                    continue;
                }
                if (!page.Backed && page.IsQueued)
                {
                    throw new InvalidOperationException($"Page {i} is Free but on the LRU.");
                }
                states[i] = StateOfUnsynchronized(page);
            }
        }
        finally
        {
            _lock.Exit();
        }
        return states;
    }
}

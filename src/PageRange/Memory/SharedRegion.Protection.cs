using static PageRange.Interop;

namespace PageRange.Memory;

/// <summary>Changing the protection of part of the mapping.</summary>
public sealed unsafe partial class SharedRegion
{
    /// <summary>The mapping's address, for tests that look it up in <c>/proc/self/maps</c>.</summary>
    internal nint BaseAddress => (nint)BasePointer;

    /// <summary>
    /// Makes <c>[offset, offset+length)</c> of this mapping read-only, as binder maps the receiver's view: a stray
    /// write through it faults instead of corrupting a buffer the peer owns.
    /// </summary>
    /// <param name="offset">A multiple of <see cref="PageSize"/>.</param>
    /// <param name="length">A multiple of <see cref="PageSize"/>.</param>
    /// <exception cref="ArgumentException">The range is outside the region or not page-aligned.</exception>
    /// <exception cref="ObjectDisposedException">The region was disposed.</exception>
    /// <exception cref="SystemCallException">mprotect failed.</exception>
    internal void ProtectReadOnly(long offset, long length)
    {
        CheckRange(offset, length);
        if (offset % PageSize != 0 || length % PageSize != 0)
        {
            throw new ArgumentException($"A protected range must be page-aligned; [{offset}, {offset}+{length}) is not.", nameof(offset));
        }
        AddRef();
        try
        {
            // SAFETY: [offset, offset+length) lies inside the mapping (checked above), which AddRef keeps mapped for the call.
            Protect((nint)BasePointer + (nint)offset, length, PROT_READ);
        }
        finally
        {
            ReleaseRef();
        }
    }
}

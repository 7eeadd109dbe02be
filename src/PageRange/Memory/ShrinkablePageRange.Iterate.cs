using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace PageRange.Memory;

/// <summary>Reading and writing the bytes of Used pages.</summary>
internal sealed unsafe partial class ShrinkablePageRange
{
    /// <summary>
    /// The seed's <c>iterate</c>: checks that <c>[offset, offset+size)</c> lies in the range without overflow and that
    /// every page it touches is Used, then returns the bytes. Pages are contiguous in our mapping, so one span serves
    /// where the seed walks page by page.
    /// </summary>
    /// <remarks>Safety: the caller keeps every touched page Used for as long as it uses the span.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The range overflows or lies outside the pages (the seed's EFAULT).</exception>
    /// <exception cref="PageNotInUseException">A touched page is Free or Available (the seed's "Page is null!"); nothing
    /// was read or written, since every page is checked before the span is handed out.</exception>
    /// <exception cref="ObjectDisposedException">The range was disposed.</exception>
    private Span<byte> Iterate(long offset, long size)
    {
        // As the seed: size 0 succeeds at once, whatever the offset.
        if (size == 0)
        {
            return [];
        }
        if (offset < 0 || size < 0 || size > int.MaxValue || offset > ByteCount - size)
        {
            ThrowHelper.ThrowOutOfRange(offset, size, ByteCount);
        }

        // Both non-negative (checked above): the shifts are the divisions by the page size.
        int first = (int)(offset >> _pageShift);
        int last = (int)((offset + size - 1) >> _pageShift);
        // A scope, not Enter and Exit: the exit of a holder the lock is biased to (the sending thread) then reads no
        // thread id, on every send's copy.
        using (_lock.EnterScope())
        {
            ThrowIfDisposedUnsynchronized();
            for (int i = first; i <= last; i++)
            {
                if (PageOrNull(i) is not { Backed: true, IsQueued: false })
                {
                    ThrowHelper.ThrowPageNotInUse(i);
                }
            }
        }
        // SAFETY: [offset, offset+size) lies within the pages (checked above), which lie within the region's mapping
        // (checked by the constructor); the mapping stays alive while this range holds its reference (until Dispose).
        return new Span<byte>(_data + offset, (int)size);
    }

    /// <summary>A writable view of Used bytes, for callers that fill a buffer in place (zero-copy send).</summary>
    /// <remarks>Safety: valid while every touched page stays Used.</remarks>
    internal Span<byte> GetSpan(long offset, int size) => Iterate(offset, size);

    /// <summary>
    /// <see cref="GetSpan"/> without the look at each page's state under the range lock, for a caller that holds the
    /// pages Used by construction (a slot of a slab being filled: its slab's buffer keeps them Used while it is open)
    /// and keeps this range from being disposed meanwhile (the channel's send lock). The bounds are still checked.
    /// </summary>
    /// <remarks>
    /// Every send of a small call, reply or oneway took the range lock for that look (two ThinLock passes and a page
    /// loop, ~9 ns a send in the call probe), on a round trip's critical path twice. Checked in debug builds.
    /// </remarks>
    internal Span<byte> GetSpanOfUsedPages(long offset, int size)
    {
        if (offset < 0 || size < 0 || offset > ByteCount - size)
        {
            ThrowHelper.ThrowOutOfRange(offset, size, ByteCount);
        }
        // A plain read of the flag Dispose sets under the range lock: the caller's lock keeps every other thread's
        // Dispose out, but not this thread's own, re-entrant one (a callback under that lock that disposes the
        // connection), which must meet an ObjectDisposedException here rather than an unmapped page (found by review).
        if (Volatile.Read(ref _disposed))
        {
            ThrowHelper.ThrowObjectDisposed(this);
        }
        Debug.Assert(size == 0 || AllUsedForDebug(offset, size), "The caller promised the pages are Used.");
        // SAFETY: [offset, offset+size) lies within the pages (checked above), which lie within the region's mapping
        // (checked by the constructor); the caller keeps the range undisposed (its lock) and the pages Used.
        return new Span<byte>(_data + offset, size);
    }

    private bool AllUsedForDebug(long offset, long size)
    {
        using (_lock.EnterScope())
        {
            for (long i = offset >> _pageShift; i <= (offset + size - 1) >> _pageShift; i++)
            {
                if (PageOrNull((int)i) is not { Backed: true, IsQueued: false })
                {
                    return false;
                }
            }
        }
        return true;
    }

    /// <summary>Copies <paramref name="source"/> into the range at <paramref name="offset"/>.</summary>
    internal void CopyFrom(long offset, ReadOnlySpan<byte> source) => source.CopyTo(Iterate(offset, source.Length));

    /// <summary>Copies every segment of <paramref name="source"/> into the range at <paramref name="offset"/>.</summary>
    internal void CopyFrom(long offset, in ReadOnlySequence<byte> source) => source.CopyTo(Iterate(offset, source.Length));

    /// <summary>Writes <paramref name="bytes"/> at <paramref name="offset"/> (the seed's <c>write</c> of an unsized object).</summary>
    internal void Write(long offset, ReadOnlySpan<byte> bytes) => CopyFrom(offset, bytes);

    /// <summary>Writes the bytes of <paramref name="value"/> at <paramref name="offset"/>; no alignment is needed.</summary>
    internal void Write<T>(long offset, in T value)
        where T : unmanaged
    {
        Span<byte> target = Iterate(offset, sizeof(T));
        // SAFETY: Iterate returned exactly sizeof(T) bytes of Used pages, so the unaligned store stays inside them;
        // T is unmanaged, so writing its bytes into shared memory exposes no object reference.
        Unsafe.WriteUnaligned(ref MemoryMarshal.GetReference(target), value);
    }

    /// <summary>Reads a <typeparamref name="T"/> from <paramref name="offset"/>; no alignment is needed.</summary>
    internal T Read<T>(long offset)
        where T : unmanaged
    {
        Span<byte> source = Iterate(offset, sizeof(T));
        // SAFETY: Iterate returned exactly sizeof(T) bytes of Used pages, so the unaligned load stays inside them; T is
        // unmanaged, so any bit pattern the peer left there is a value of T, not a forged reference.
        return Unsafe.ReadUnaligned<T>(ref MemoryMarshal.GetReference(source));
    }

    /// <summary>Copies <c>destination.Length</c> bytes at <paramref name="offset"/> into <paramref name="destination"/>.</summary>
    internal void Read(long offset, Span<byte> destination) => Iterate(offset, destination.Length).CopyTo(destination);

    /// <summary>Writes zeros over <c>[offset, offset+size)</c>.</summary>
    internal void FillZero(long offset, long size) => Iterate(offset, size).Clear();
}

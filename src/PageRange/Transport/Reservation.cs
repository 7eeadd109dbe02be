using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace PageRange.Transport;

/// <summary>
/// The state behind a <see cref="ReservedBuffer"/>: a buffer reserved in the peer's region, how much of it was written,
/// and what it will be committed as. Pooled per connection and reused; <see cref="Generation"/> changes on every use, so
/// a stale <see cref="ReservedBuffer"/> copy is detected instead of writing into someone else's buffer.
/// </summary>
/// <remarks>
/// Not thread-safe: one thread at a time writes and commits a reservation, as with any <see cref="IBufferWriter{T}"/>.
/// While live it holds a reference on the peer's region, so a span handed out stays mapped even if the connection is
/// disposed meanwhile (writes then go nowhere: the commit fails).
/// </remarks>
internal sealed class Reservation : IBufferWriter<byte>
{
    internal Reservation(PageRangeConnection connection) => Connection = connection;

    internal PageRangeConnection Connection { get; }

    /// <summary>Odd while the reservation is live, even while it is pooled.</summary>
    internal int Generation;

    internal PendingBuffer Buffer;

    internal ReservationKind Kind;

    /// <summary>Bytes advanced through <see cref="IBufferWriter{T}"/>.</summary>
    internal int Written;

    /// <summary>For a reply: the call it answers and that call's slot generation when reserved.</summary>
    internal IncomingSlot? Call;

    internal int CallGeneration;

    internal ulong ReplyId;

    internal uint ReplyCode;

    /// <summary>
    /// Typed sends only: when the message outgrows the reservation, what was written so far moves here and writing
    /// continues here, so the serializer never fails; the caller then aborts the reservation and sends this copy.
    /// </summary>
    internal ArrayBufferWriter<byte>? Spill;

    /// <summary>Whether writing moved to <see cref="Spill"/>.</summary>
    internal bool Spilled;

    internal bool IsLive => (Generation & 1) == 1;

    /// <summary>The whole reserved buffer.</summary>
    internal Span<byte> Span => Buffer.Span;

    /// <summary>The bytes written, wherever they are.</summary>
    internal int Length => Spilled ? Spill!.WrittenCount : Written;

    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (Spilled)
        {
            Spill!.Advance(count);
            return;
        }
        if (count > Buffer.MaxSize - Written)
        {
            throw new ArgumentOutOfRangeException(
                nameof(count), count, $"Only {Buffer.MaxSize - Written} of the {Buffer.MaxSize} reserved bytes are left; reserve more.");
        }
        Written += count;
    }

    public Span<byte> GetSpan(int sizeHint = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sizeHint);
        if (Spilled || (NeedsMore(sizeHint) && TrySpill()))
        {
            return Spill!.GetSpan(sizeHint);
        }
        if (NeedsMore(sizeHint))
        {
            ThrowTooSmall(sizeHint);
        }
        return Buffer.Span[Written..];
    }

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sizeHint);
        if (Spilled || (NeedsMore(sizeHint) && TrySpill()))
        {
            return Spill!.GetMemory(sizeHint);
        }
        if (NeedsMore(sizeHint))
        {
            ThrowTooSmall(sizeHint);
        }
        return new ReservationMemory(this, Generation).Memory[Written..];
    }

    private bool NeedsMore(int sizeHint)
    {
        int left = Buffer.MaxSize - Written;
        return left < Math.Max(sizeHint, 1);
    }

    private bool TrySpill()
    {
        if (Spill is not { } spill)
        {
            return false;
        }
        spill.ResetWrittenCount();
        spill.Write(Buffer.Span[..Written]);
        Spilled = true;
        return true;
    }

    private void ThrowTooSmall(int sizeHint) =>
        throw new InvalidOperationException(
            $"The reservation has {Buffer.MaxSize - Written} of its {Buffer.MaxSize} bytes left and {Math.Max(sizeHint, 1)} were asked for; reserve more.");

    /// <summary>
    /// Memory over one reservation, for <see cref="IBufferWriter{T}.GetMemory"/> callers. One per call, so memory kept
    /// past the commit fails with <see cref="ObjectDisposedException"/> instead of writing into a later reservation.
    /// </summary>
    private sealed unsafe class ReservationMemory(Reservation reservation, int generation) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan()
        {
            if (Volatile.Read(ref reservation.Generation) != generation)
            {
                throw new ObjectDisposedException(nameof(ReservedBuffer), "The reservation was committed or aborted.");
            }
            return reservation.Buffer.Span;
        }

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            Span<byte> span = GetSpan();
            ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, span.Length);
            // SAFETY: the span lies in a shared mapping, which never moves; the reservation's reference on the region
            // keeps it mapped while the reservation is live, and the index is within the span (checked above).
            return new MemoryHandle((byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(span)) + elementIndex);
        }

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}

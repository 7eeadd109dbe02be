namespace PageRange.Transport;

/// <summary>
/// A server's bound on how long a reply waits for room in the caller's region (binder fails a reply that does not fit
/// at once): a client that stops reading its replies must not hold the server's workers for the whole
/// <see cref="PageRangeOptions.RegionFullTimeout"/>.
/// </summary>
public sealed partial class PageRangeConnection
{
    // In ticks, -1 for none: one word, so the worker that zeroes it and the ones reading it never see half a value.
    private long _replyRoomTicks = -1;
    private Action<RegionFullException>? _replyRoomExhausted;

    /// <summary>
    /// Bounds the wait for room of every reply and error reply (sync, async, reserved) by <paramref name="timeout"/>
    /// instead of <see cref="PageRangeOptions.RegionFullTimeout"/>, and calls <paramref name="exhausted"/> (on the
    /// replying thread; it must be quick) each time one gives up for lack of room. Set once, before the first reply.
    /// Once a reply gave up, later replies do not wait at all: the peer is not reading, and the one who set the limit
    /// closes the connection.
    /// </summary>
    internal void SetReplyRoomLimit(TimeSpan timeout, Action<RegionFullException> exhausted)
    {
        Volatile.Write(ref _replyRoomTicks, timeout.Ticks);
        _replyRoomExhausted = exhausted;
    }

    /// <summary>How long a send with <paramref name="flags"/> waits for room in the peer's region.</summary>
    private TimeSpan RoomTimeout(TransactionFlags flags) =>
        (flags & (TransactionFlags.Reply | TransactionFlags.ErrorReply)) != 0 && Volatile.Read(ref _replyRoomTicks) is >= 0 and long ticks
            ? TimeSpan.FromTicks(ticks)
            : _options.RegionFullTimeout;

    /// <summary>Reports a reply that found no room within its limit, to the one who set the limit.</summary>
    private void OnReplyRoomExhausted(TransactionFlags flags, RegionFullException full)
    {
        if ((flags & (TransactionFlags.Reply | TransactionFlags.ErrorReply)) != 0 && _replyRoomExhausted is { } exhausted)
        {
            Volatile.Write(ref _replyRoomTicks, 0);
            exhausted(full);
        }
    }
}

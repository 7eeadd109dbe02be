using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using PageRange.Transport;

namespace PageRange.Serialization;

/// <summary>Byte streams over a <see cref="PageRangeConnection"/>: <see cref="AsDuplexPipe"/>.</summary>
public static class PageRangeStreams
{
    /// <summary>The code of a stream's data messages (oneway; the payload is the next bytes of the stream).</summary>
    public const uint DataCode = 0xFFFF_FF01;

    /// <summary>The code of the message that ends a stream: the sender completed its writer.</summary>
    public const uint EndCode = 0xFFFF_FF02;

    /// <summary>The code of the message that aborts a stream: the sender completed its writer with an error (UTF-8 payload).</summary>
    public const uint AbortCode = 0xFFFF_FF03;

    /// <summary>The default largest data message: 256 KiB, or a quarter of the peer's oneway quota if that is less.</summary>
    public const int DefaultChunkSize = 256 << 10;

    private static readonly ConditionalWeakTable<PageRangeConnection, PageRangeDuplexPipe> s_pipes = [];

    /// <summary>
    /// Turns the connection into a byte stream in both directions, with <see cref="System.IO.Pipelines"/> semantics, so a
    /// byte-stream protocol runs over PageRange unchanged.
    /// </summary>
    /// <param name="connection">The connection; from now on it is dedicated to the stream (see remarks).</param>
    /// <param name="chunkSize">The largest data message, in bytes; 0 for <see cref="DefaultChunkSize"/>. Capped at a
    /// quarter of the peer's oneway quota so several chunks are in flight.</param>
    /// <returns>The pipe: write to <see cref="IDuplexPipe.Output"/>, read from <see cref="IDuplexPipe.Input"/>.</returns>
    /// <remarks>
    /// <para>
    /// <b>Dedicated connection.</b> The pipe receives every transaction that arrives on the connection. Do not call
    /// <see cref="PageRangeConnection.Receive"/> (or its async forms) while the pipe is in use; both sides of a
    /// connection should use the pipe. A transaction that is not part of the stream completes
    /// <see cref="IDuplexPipe.Input"/> with an <see cref="InvalidMessageException"/> (a two-way call gets an error
    /// reply, <see cref="CallStatus.FailedPrecondition"/>). Once the input is complete (by the end, the abort, such a
    /// transaction, or the application), the pipe still takes every transaction until the connection ends, so the peer
    /// never waits on a region nobody empties: oneway messages, data included, are freed unread, and two-way calls get
    /// that error reply. Calls and oneway sends <em>from</em> this side still work, but the peer's pipe will reject
    /// them. A connection has at most one pipe.
    /// </para>
    /// <para>
    /// <b>Back-pressure.</b> Written bytes are sent in oneway messages of at most <paramref name="chunkSize"/> bytes,
    /// copied once into the peer's region. When the peer's reader falls behind, its region fills, sending waits for room
    /// (without the <see cref="PageRangeOptions.RegionFullTimeout"/>: a stream waits as long as its reader does), and
    /// <see cref="PipeWriter.FlushAsync"/> stops completing once about two chunks are buffered on this side. On the
    /// receiving side, data is copied from the region into the input pipe and the message freed at once; when the
    /// application does not read, the receiving side stops taking messages, which fills the region.
    /// </para>
    /// <para>
    /// <b>Completion.</b> Completing <see cref="IDuplexPipe.Output"/> sends an end-of-stream message once the bytes before
    /// it are sent; the peer's <see cref="IDuplexPipe.Input"/> completes when it arrives. Completing it with an exception
    /// sends an abort instead, and the peer's reader throws a <see cref="PageRangeException"/> carrying the message. Both
    /// wait for room in the peer's region as data does, without the region-full timeout. If
    /// the peer dies first, the reader throws <see cref="PeerDiedException"/> after the bytes already sent, and the
    /// writer's next flush throws it too. Completing <see cref="IDuplexPipe.Input"/> drops whatever arrives later.
    /// </para>
    /// <para>
    /// <b>Cancellation.</b> <see cref="PipeReader.CancelPendingRead"/> and <see cref="PipeWriter.CancelPendingFlush"/> work
    /// as for any pipe, as do the tokens passed to <see cref="PipeReader.ReadAsync"/> and <see cref="PipeWriter.FlushAsync"/>;
    /// a cancelled read loses no data.
    /// </para>
    /// </remarks>
    /// <exception cref="InvalidOperationException">The connection already has a pipe.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="chunkSize"/> is negative.</exception>
    public static IDuplexPipe AsDuplexPipe(this PageRangeConnection connection, int chunkSize = 0)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentOutOfRangeException.ThrowIfNegative(chunkSize);
        int chunk = (int)Math.Max(1, Math.Min(chunkSize == 0 ? DefaultChunkSize : chunkSize, connection.MaxOnewayMessageSize / 4));
        var pipe = new PageRangeDuplexPipe(connection, chunk);
        if (!s_pipes.TryAdd(connection, pipe))
        {
            throw new InvalidOperationException("This connection already has a duplex pipe; a connection carries at most one stream.");
        }
        pipe.Start();
        return pipe;
    }
}

using System.Buffers;
using System.Buffers.Binary;
using Grpc.Core;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// Writes one stream's messages into frames, several per frame when the writer is quicker than the frames go out: a
/// message is serialized by its marshaller straight into an open <see cref="GrpcFrameKind.Messages"/> frame reserved in
/// the peer's region, and the frame is committed (one reservation, one commit, at most one wake of the peer for all its
/// messages) by a flush queued to the thread pool when the frame got its first message, or at once when it is full,
/// when the writer is about to wait for credit, and when the stream ends.
/// </summary>
/// <remarks>
/// One writer at a time (gRPC allows no concurrent writes on a stream); the queued flush is the only other thread, and
/// <see cref="_lock"/> keeps it out while a message is being serialized. Frames are committed in the order they were
/// opened: a frame is committed before the next one is reserved, under the lock. A frame that finds the peer's region full
/// waits for room under the lock, but no longer than the call: until its deadline or its token (or the write's own token),
/// not the connection's whole <see cref="PageRangeOptions.RegionFullTimeout"/>.
/// </remarks>
internal sealed class GrpcFrameWriter : SerializationContext, IBufferWriter<byte>
{
    /// <summary>The bytes a frame of several messages reserves: large enough to carry many small messages, small
    /// beside the peer's region (a larger message gets a frame of its own size).</summary>
    internal const int FrameCapacity = 16 * 1024;

    /// <summary>Frame head, then the u16 count.</summary>
    internal const int BatchHeadLength = GrpcFrames.HeadLength + 2;

    /// <summary>Each message's u32 length.</summary>
    internal const int LengthPrefix = 4;

    private static readonly Action<GrpcFrameWriter> s_flush = static writer => writer.FlushQueued();

    private readonly Lock _lock = new();
    private readonly PageRangeConnection _connection;
    private readonly ulong _streamId;
    private readonly DateTimeOffset? _deadline;
    private readonly CancellationToken _callCancelled;
    private CancellationToken _writeCancelled;
    private ReservedBuffer _frame;
    private bool _open;
    private int _count;
    private int _end;
    private bool _flushQueued;
    private bool _closed;

    // The message being serialized: where its bytes start, how many were announced, how many written.
    private int _messageStart;
    private int _announced;
    private int _written;
    private byte[]? _array;
    private bool _completed;

    /// <param name="connection">The connection the frames go out on.</param>
    /// <param name="streamId">The stream's id, in each frame's head.</param>
    /// <param name="deadline">The call's deadline, if it has one and <paramref name="callCancelled"/> does not fire at it
    /// (the client's: its token is the caller's).</param>
    /// <param name="callCancelled">Fires when the call is cancelled (on the server, at its deadline too; on the client, once
    /// the call is over too).</param>
    internal GrpcFrameWriter(PageRangeConnection connection, ulong streamId, DateTimeOffset? deadline, CancellationToken callCancelled)
    {
        _connection = connection;
        _streamId = streamId;
        _deadline = deadline;
        _callCancelled = callCancelled;
    }

    /// <summary>Frames committed so far (tests look).</summary>
    internal int FramesSent { get; private set; }

    /// <summary>
    /// <see cref="Write"/> for a message whose message credit the caller took from <paramref name="gate"/>: its bytes are
    /// charged before its frame can go; if nothing was sent, the credit (and any charge) goes back.
    /// </summary>
    /// <exception cref="RpcException">As <see cref="Write"/>.</exception>
    /// <exception cref="PageRangeException">As <see cref="Write"/>.</exception>
    /// <exception cref="TimeoutException">As <see cref="Write"/>.</exception>
    /// <exception cref="OperationCanceledException">As <see cref="Write"/>.</exception>
    internal void WriteWithCredit<T>(GrpcCreditGate gate, Marshaller<T> marshaller, T message, CancellationToken cancellationToken = default)
    {
        int charged = 0;
        try
        {
            Write(marshaller, message, gate, cancellationToken, ref charged);
        }
        catch
        {
            // Nothing was sent: the message credit taken for it is still the writer's (256 failed writes left it none).
            gate.Return(charged);
            throw;
        }
    }

    /// <summary>
    /// Serializes <paramref name="message"/> into the open frame (opening one if needed) and queues its flush.
    /// </summary>
    /// <returns>The message's bytes (what the byte credit is charged).</returns>
    /// <exception cref="RpcException">The marshaller failed (<see cref="StatusCode.Internal"/>) or the message does not fit
    /// the peer's region (<see cref="StatusCode.ResourceExhausted"/>).</exception>
    /// <exception cref="PageRangeException">The peer is gone, or its region stayed full.</exception>
    /// <exception cref="TimeoutException">The call's deadline passed while the frame waited for room.</exception>
    /// <exception cref="OperationCanceledException">The call, or this write (<paramref name="cancellationToken"/>), was
    /// cancelled while the frame waited for room.</exception>
    private int Write<T>(Marshaller<T> marshaller, T message, GrpcCreditGate gate, CancellationToken cancellationToken, ref int charged)
    {
        bool queue;
        int size;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            _announced = -1;
            _written = 0;
            _completed = false;
            // For Place, which the marshaller calls back: the write's token ends a wait for room as the call's does.
            _writeCancelled = cancellationToken;
            try
            {
                marshaller.ContextualSerializer(message, this);
                if (!_completed)
                {
                    Complete();
                }
                if (_written != _announced)
                {
                    throw new InvalidOperationException($"The marshaller announced {_announced} bytes and wrote {_written}.");
                }
            }
            catch (Exception error) when (error is not (RpcException or PageRangeException or OperationCanceledException or TimeoutException or ObjectDisposedException))
            {
                DropPartial();
                throw new RpcException(new Status(StatusCode.Internal, "Error starting gRPC call: the message could not be serialized.", error));
            }
            catch (MessageTooLargeException error)
            {
                DropPartial();
                throw new RpcException(new Status(StatusCode.ResourceExhausted, $"The message is too large for the peer's region: {error.Message}", error));
            }
            catch
            {
                DropPartial();
                throw;
            }
            finally
            {
                _writeCancelled = default;
            }
            size = _written;
            // Charged before the frame can go (the commit below, or the queued flush): once it is out, the reader may read
            // it and grant its bytes back at once, and a grant that came before the charge went past the window and
            // closed the connection as a violation (seen with a 1.5 MiB message in a clean-clone run).
            gate.Consume(size);
            charged = size;
            BinaryPrimitives.WriteUInt32LittleEndian(_frame.Span[(_messageStart - LengthPrefix)..], (uint)size);
            _end = _messageStart + size;
            _count++;
            if (_end + LengthPrefix >= FrameCapacity || _count == GrpcWire.WindowMessages)
            {
                // Full: it goes now, and the next message opens a new one.
                CommitUnlocked();
                queue = false;
            }
            else
            {
                queue = !_flushQueued;
                _flushQueued = true;
            }
        }
        if (queue)
        {
            ThreadPool.UnsafeQueueUserWorkItem(s_flush, this, preferLocal: false);
        }
        return size;
    }

    /// <summary>Commits the open frame, if any: before the writer waits for credit, and before anything that must follow
    /// the messages written so far (half-close, the call's reply).</summary>
    /// <exception cref="PageRangeException">The peer is gone.</exception>
    internal void Flush()
    {
        lock (_lock)
        {
            CommitUnlocked();
        }
    }

    /// <summary>Commits what is open (quietly: a peer gone is seen elsewhere) and takes no more messages.</summary>
    internal void Close(bool send)
    {
        lock (_lock)
        {
            if (send)
            {
                try
                {
                    CommitUnlocked();
                }
                catch (Exception error) when (error is PageRangeException or ObjectDisposedException)
                {
                    // The peer is gone: the call ends through the connection's end.
                }
            }
            if (_open)
            {
                _open = false;
                _frame.Dispose();
            }
            _closed = true;
        }
    }

    /// <inheritdoc/>
    public override void SetPayloadLength(int payloadLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(payloadLength);
        if (_announced < 0 && _array is null)
        {
            Place(payloadLength);
        }
    }

    /// <inheritdoc/>
    public override IBufferWriter<byte> GetBufferWriter()
    {
        if (_announced < 0 && _array is null)
        {
            // The marshaller did not announce the length: a pooled buffer, copied into the frame at Complete.
            _array = ArrayPool<byte>.Shared.Rent(1024);
        }
        return this;
    }

    /// <inheritdoc/>
    public override void Complete()
    {
        _completed = true;
        if (_array is { } array)
        {
            int length = _written;
            _array = null;
            try
            {
                Place(length);
                array.AsSpan(0, length).CopyTo(_frame.Span.Slice(_messageStart, length));
                _written = length;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(array);
            }
        }
        else if (_announced < 0)
        {
            Place(0);
        }
    }

    /// <inheritdoc/>
    public override void Complete(byte[] payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        _completed = true;
        Place(payload.Length);
        payload.CopyTo(_frame.Span.Slice(_messageStart, payload.Length));
        _written = payload.Length;
    }

    /// <inheritdoc/>
    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        int room = _array is { } array ? array.Length - _written : _announced - _written;
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, room);
        _written += count;
    }

    /// <inheritdoc/>
    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        if (_array is not null)
        {
            EnsureArray(sizeHint);
            return _array.AsMemory(_written);
        }
        // A reservation hands out spans only; a marshaller that asks for memory after announcing gets a pooled buffer.
        throw new NotSupportedException("GetMemory after SetPayloadLength: use GetSpan.");
    }

    /// <inheritdoc/>
    public Span<byte> GetSpan(int sizeHint = 0)
    {
        if (_array is not null)
        {
            EnsureArray(sizeHint);
            return _array.AsSpan(_written);
        }
        if (_announced < 0)
        {
            throw new InvalidOperationException("GetBufferWriter or SetPayloadLength comes first.");
        }
        Span<byte> rest = _frame.Span.Slice(_messageStart + _written, _announced - _written);
        if (sizeHint > rest.Length)
        {
            throw new InvalidOperationException($"The marshaller asked for {sizeHint} bytes beyond the {_announced} it announced.");
        }
        return rest;
    }

    /// <summary>Makes room for a message of <paramref name="length"/> bytes in the open frame, or commits it and opens another.</summary>
    private void Place(int length)
    {
        if (_open && _end + LengthPrefix + length > _frame.MaxSize)
        {
            CommitUnlocked();
        }
        if (!_open)
        {
            int needed = checked(BatchHeadLength + LengthPrefix + length);
            // Waits under the lock while the peer's region is full, so only until the call ends (its deadline or its token)
            // or the write is cancelled. The transport links the tokens only if it has to wait.
            _frame = _connection.ReserveOneway(Math.Max(needed, FrameCapacity > needed + LengthPrefix ? FrameCapacity : needed), _deadline, _callCancelled, _writeCancelled);
            _open = true;
            _count = 0;
            _end = BatchHeadLength;
            GrpcFrames.WriteHead(_frame.Span, GrpcFrameKind.Messages, _streamId);
        }
        _messageStart = _end + LengthPrefix;
        _announced = length;
    }

    private void CommitUnlocked()
    {
        if (!_open)
        {
            return;
        }
        _open = false;
        ReservedBuffer frame = _frame;
        if (_count == 0)
        {
            frame.Dispose();
            return;
        }
        BinaryPrimitives.WriteUInt16LittleEndian(frame.Span[GrpcFrames.HeadLength..], (ushort)_count);
        try
        {
            frame.CommitOneway(GrpcWire.FrameCode, _end);
            FramesSent++;
        }
        finally
        {
            frame.Dispose();
        }
    }

    /// <summary>A message that failed halfway: the frame keeps only the messages before it.</summary>
    private void DropPartial()
    {
        if (_array is { } array)
        {
            _array = null;
            ArrayPool<byte>.Shared.Return(array);
        }
        _announced = -1;
        _written = 0;
    }

    private void FlushQueued()
    {
        lock (_lock)
        {
            _flushQueued = false;
            try
            {
                CommitUnlocked();
            }
            catch (Exception error) when (error is PageRangeException or ObjectDisposedException)
            {
                // The peer is gone: the writer's next write or the call's end sees it.
            }
        }
    }

    private void EnsureArray(int sizeHint)
    {
        int need = Math.Max(sizeHint, 1);
        if (_array!.Length - _written >= need)
        {
            return;
        }
        byte[] grown = ArrayPool<byte>.Shared.Rent(checked(Math.Max(_array.Length * 2, _written + need)));
        _array.AsSpan(0, _written).CopyTo(grown);
        ArrayPool<byte>.Shared.Return(_array);
        _array = grown;
    }
}

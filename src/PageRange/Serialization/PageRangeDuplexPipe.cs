using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using PageRange.Transport;

namespace PageRange.Serialization;

/// <summary>
/// The <see cref="IDuplexPipe"/> behind <see cref="PageRangeStreams.AsDuplexPipe"/>: two <see cref="Pipe"/>s and two
/// pumps. The send pump, a thread of its own because sending blocks while the peer's region is full, reads what the
/// application wrote and sends it in chunks reserved in the peer's region; the receive pump copies each data message
/// into the input pipe and frees it.
/// </summary>
internal sealed class PageRangeDuplexPipe : IDuplexPipe
{
    private readonly PageRangeConnection _connection;
    private readonly int _chunkSize;
    private readonly Pipe _input;
    private readonly Pipe _output;
    private readonly Thread _sendPump;

    internal PageRangeDuplexPipe(PageRangeConnection connection, int chunkSize)
    {
        _connection = connection;
        _chunkSize = chunkSize;
        // About two chunks buffered on each side before the writer waits; the region holds the rest in flight.
        var options = new PipeOptions(
            pauseWriterThreshold: 2L * chunkSize,
            resumeWriterThreshold: chunkSize,
            minimumSegmentSize: Math.Min(chunkSize, 64 << 10),
            useSynchronizationContext: false);
        _input = new Pipe(options);
        _output = new Pipe(options);
        _sendPump = new Thread(SendLoop) { IsBackground = true, Name = $"PageRange stream sender ({connection.Name})" };
    }

    public PipeReader Input => _input.Reader;

    public PipeWriter Output => _output.Writer;

    internal void Start()
    {
        _sendPump.Start();
        _ = Task.Run(ReceiveLoopAsync);
        // A send pump waiting for the application's bytes learns of the peer's death here.
        _connection.PeerDied.UnsafeRegister(static state => ((Pipe)state!).Reader.CancelPendingRead(), _output);
    }

    private void SendLoop()
    {
        PipeReader reader = _output.Reader;
        Exception? failure = null;
        try
        {
            while (true)
            {
                ReadResult result;
                try
                {
                    ValueTask<ReadResult> read = reader.ReadAsync();
                    result = read.IsCompleted ? read.Result : read.AsTask().GetAwaiter().GetResult();
                }
                catch (Exception writerError)
                {
                    // The application completed its writer with an error: tell the peer why the stream ends. Whatever its
                    // type: a read of the pipe throws nothing else, and a relay passes on the PageRangeException (or
                    // ObjectDisposedException) that ended its other side.
                    byte[] message = Encoding.UTF8.GetBytes($"{writerError.GetType().Name}: {writerError.Message}");
                    Send(PageRangeStreams.AbortCode, new ReadOnlySequence<byte>(message, 0, Math.Min(message.Length, _chunkSize)));
                    return;
                }
                ReadOnlySequence<byte> buffer = result.Buffer;
                while (!buffer.IsEmpty)
                {
                    int length = (int)Math.Min(buffer.Length, _chunkSize);
                    Send(PageRangeStreams.DataCode, buffer.Slice(0, length));
                    buffer = buffer.Slice(length);
                }
                reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    Send(PageRangeStreams.EndCode, ReadOnlySequence<byte>.Empty);
                    return;
                }
                if (result.IsCanceled && !_connection.IsPeerAlive)
                {
                    throw new PeerDiedException($"The peer process {_connection.PeerPid} is gone; the stream was cut short.");
                }
            }
        }
        catch (Exception error)
        {
            // Completing the reader with the error makes the application's next flush throw it.
            failure = error;
        }
        finally
        {
            reader.Complete(failure);
        }
    }

    /// <summary>Sends one message of the stream: a chunk of data, the end, or the abort.</summary>
    /// <remarks>
    /// A stream waits for its reader as long as the reader takes, so no region-full timeout; the connection's death or
    /// dispose still ends the wait. The end and the abort wait alike: behind a slow reader's full region they would
    /// otherwise fail after the timeout, unsent, and the peer would never learn that the stream ended.
    /// </remarks>
    private void Send(uint code, in ReadOnlySequence<byte> payload)
    {
        int length = (int)payload.Length;
        Reservation reservation = _connection.RentReservation(length, ReservationKind.Oneway, Timeout.InfiniteTimeSpan, CancellationToken.None);
        try
        {
            payload.CopyTo(reservation.Span);
        }
        catch
        {
            _connection.AbortReservation(reservation);
            throw;
        }
        _connection.CommitOneway(reservation, code, length);
    }

    private async Task ReceiveLoopAsync()
    {
        PipeWriter writer = _input.Writer;
        try
        {
            await ReceiveStreamAsync(writer).ConfigureAwait(false);
        }
        catch (ObjectDisposedException closed)
        {
            await writer.CompleteAsync(new PeerDiedException($"The connection closed before the stream ended ({closed.Message}).", closed)).ConfigureAwait(false);
            return;
        }
        catch (Exception error)
        {
            // Whatever ended receiving ends the application's reads, with the reason.
            await writer.CompleteAsync(error).ConfigureAwait(false);
            return;
        }
        await DiscardAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Copies the peer's data into the input until the input is complete: the end, the abort, a transaction that is not
    /// part of the stream, or the application completed its reader. Throws what ended the connection.
    /// </summary>
    private async Task ReceiveStreamAsync(PipeWriter writer)
    {
        while (true)
        {
            Transaction transaction = await _connection.ReceiveAsync().ConfigureAwait(false);
            using (transaction)
            {
                switch (transaction.Code)
                {
                    case PageRangeStreams.DataCode when transaction.IsOneway:
                        writer.Write(transaction.Payload);
                        break;
                    case PageRangeStreams.EndCode when transaction.IsOneway:
                        await writer.CompleteAsync().ConfigureAwait(false);
                        return;
                    case PageRangeStreams.AbortCode when transaction.IsOneway:
                        // The peer's text, bounded and without control characters, as an error reply's (TakeReply).
                        await writer.CompleteAsync(new PageRangeException(
                            $"The peer aborted the stream: {PeerText.Sanitize(transaction.Payload)}")).ConfigureAwait(false);
                        return;
                    default:
                        string notPartOfTheStream =
                            $"Transaction {transaction.Id} (code {transaction.Code}, {transaction.Flags}) is not part of the stream: " +
                            "a connection is dedicated to its duplex pipe.";
                        Refuse(transaction, notPartOfTheStream);
                        await writer.CompleteAsync(new InvalidMessageException(notPartOfTheStream)).ConfigureAwait(false);
                        return;
                }
            }
            FlushResult flushed = await writer.FlushAsync().ConfigureAwait(false);
            if (flushed.IsCompleted)
            {
                // The application completed its reader: it wants no more.
                return;
            }
        }
    }

    /// <summary>
    /// Takes every transaction that arrives after the input is complete, until the connection ends: the connection is
    /// still the pipe's and nothing else receives, so otherwise the peer's data would fill our region and stall its
    /// writer for ever, and its calls would never be answered. Oneway messages (data included) are freed unread;
    /// two-way calls get an error reply.
    /// </summary>
    private async Task DiscardAsync()
    {
        try
        {
            while (true)
            {
                using Transaction transaction = await _connection.ReceiveAsync().ConfigureAwait(false);
                Refuse(transaction, $"Transaction {transaction.Id} (code {transaction.Code}) arrived after the stream's input ended: " +
                    "a connection is dedicated to its duplex pipe.");
            }
        }
        catch (Exception error) when (error is PageRangeException or ObjectDisposedException)
        {
            // The connection ended (the peer died or broke the protocol, or it was closed): nothing more arrives.
        }
    }

    /// <summary>Fails a two-way call the pipe does not take with <see cref="CallStatus.FailedPrecondition"/>; a oneway message needs no answer.</summary>
    private static void Refuse(Transaction transaction, string why)
    {
        if (!transaction.IsTwoWay)
        {
            return;
        }
        try
        {
            transaction.ReplyError(CallStatus.FailedPrecondition, why);
        }
        catch (PageRangeException)
        {
            // No room for the reply, or the caller is gone: disposing the call still tells a live caller (binder's
            // failed reply, over the control socket).
        }
    }
}

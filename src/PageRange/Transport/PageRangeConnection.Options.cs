using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using PageRange.Diagnostics;

namespace PageRange.Transport;

/// <summary>Calls and oneway messages with per-call options, tracing and call metrics.</summary>
public sealed partial class PageRangeConnection
{
    /// <summary>The longest wait a call's timer takes (a call's timeout is validated against it too).</summary>
    private static readonly TimeSpan s_longestTimer = TimeSpan.FromMilliseconds(int.MaxValue - 1);

    /// <summary>Calls the peer with per-call <paramref name="options"/> and waits on this thread for its reply.</summary>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="payload">The request bytes; may be empty.</param>
    /// <param name="options">Deadline, metadata and clear-on-free for this call; <c>null</c>: none.</param>
    /// <param name="timeout">How long to wait for the reply; defaults to <see cref="PageRangeOptions.CallTimeout"/>.
    /// A deadline in <paramref name="options"/> shortens it.</param>
    /// <param name="cancellationToken">Cancels the wait; the peer's handler sees it through <see cref="Transaction.CallCancelled"/>.</param>
    /// <returns>The reply, read in place from our region. Dispose it.</returns>
    /// <exception cref="TimeoutException">No reply within the timeout or before the deadline, or the deadline had
    /// passed already (then nothing was sent).</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <exception cref="PeerDiedException">The peer is gone, or died before replying.</exception>
    /// <exception cref="RemoteCallException">The peer's handler failed or disposed the call without replying.</exception>
    /// <exception cref="MessageTooLargeException">The request can never fit the peer's region.</exception>
    /// <exception cref="RegionFullException">The peer's region stayed full.</exception>
    public Transaction Call(uint code, ReadOnlySpan<byte> payload, PageRangeCallOptions options, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Call(code, payload, default(CallChain), options, timeout, cancellationToken);
    }

    /// <summary>
    /// Calls the peer in <paramref name="chain"/> with per-call <paramref name="options"/> and waits on this thread for its
    /// reply.
    /// </summary>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="payload">The request bytes; may be empty.</param>
    /// <param name="chain">The chain, from <see cref="Transaction.NestedChain"/> of the call being handled; <c>default</c>
    /// starts a new chain.</param>
    /// <param name="options">Deadline, metadata and clear-on-free for this call; <c>null</c>: none.</param>
    /// <param name="timeout">How long to wait for the reply; defaults to <see cref="PageRangeOptions.CallTimeout"/>.
    /// A deadline in <paramref name="options"/> shortens it.</param>
    /// <param name="cancellationToken">Cancels the wait; the peer's handler sees it through <see cref="Transaction.CallCancelled"/>.</param>
    /// <returns>The reply, read in place from our region. Dispose it.</returns>
    /// <remarks>
    /// When the <see cref="PageRangeTracing.SourceName"/> activity source has listeners, the call is a client activity and
    /// carries its W3C trace context to the callee. Without options and listeners this is the plain call: nothing extra
    /// is sent or allocated.
    /// </remarks>
    /// <exception cref="PageRangeStatusException">The call would be deeper than <see cref="PageRangeOptions.MaxCallDepth"/>.</exception>
    /// <exception cref="TimeoutException">No reply within the timeout or before the deadline, or the deadline had
    /// passed already (then nothing was sent).</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <exception cref="PeerDiedException">The peer is gone, or died before replying.</exception>
    /// <exception cref="RemoteCallException">The peer failed the call, or disposed it without replying.</exception>
    /// <exception cref="MessageTooLargeException">The request can never fit the peer's region.</exception>
    /// <exception cref="RegionFullException">The peer's region stayed full.</exception>
    public Transaction Call(
        uint code, ReadOnlySpan<byte> payload, CallChain chain, PageRangeCallOptions? options, TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        ValidateCallTimeout(timeout);
        if (options is null && !CallsObserved)
        {
            return CallCore(code, payload, TransactionFlags.TwoWay, ContextFor(chain), timeout, cancellationToken);
        }
        return CallObserved(code, payload, chain, options, timeout, cancellationToken);
    }

    /// <summary>Calls the peer with per-call <paramref name="options"/> and completes when its reply arrives.</summary>
    /// <inheritdoc cref="Call(uint, ReadOnlySpan{byte}, PageRangeCallOptions, TimeSpan?, CancellationToken)"/>
    public ValueTask<Transaction> CallAsync(
        uint code, ReadOnlyMemory<byte> payload, PageRangeCallOptions options, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return CallAsync(code, payload, default(CallChain), options, timeout, cancellationToken);
    }

    /// <summary>Calls the peer in <paramref name="chain"/> with per-call <paramref name="options"/> and completes when its reply arrives.</summary>
    /// <remarks>An asynchronous caller does not run the peer's nested calls itself: they go to the receivers.</remarks>
    /// <inheritdoc cref="Call(uint, ReadOnlySpan{byte}, CallChain, PageRangeCallOptions?, TimeSpan?, CancellationToken)"/>
    public ValueTask<Transaction> CallAsync(
        uint code, ReadOnlyMemory<byte> payload, CallChain chain, PageRangeCallOptions? options, TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        ValidateCallTimeout(timeout);
        if (options is null && !CallsObserved)
        {
            return CallAsyncCore(code, payload, TransactionFlags.TwoWay, ContextFor(chain), timeout, cancellationToken);
        }
        return CallObservedAsync(code, payload, chain, options, timeout, cancellationToken);
    }

    /// <summary>Sends a oneway message with per-call <paramref name="options"/>.</summary>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="payload">The bytes to send; may be empty.</param>
    /// <param name="options">Deadline, metadata and clear-on-free for this message; <c>null</c>: none. The current
    /// activity's trace context, if any, goes with the metadata.</param>
    /// <exception cref="MessageTooLargeException">The message is larger than the peer's oneway quota and can never fit.</exception>
    /// <exception cref="RegionFullException">The peer's region (or its oneway quota) stayed full for <see cref="PageRangeOptions.RegionFullTimeout"/>.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    public void SendOneway(uint code, ReadOnlySpan<byte> payload, PageRangeCallOptions? options)
    {
        if (options is null)
        {
            SendOneway(code, payload);
            return;
        }
        byte[]? block = RentMetadataBlock(options, Activity.Current, out int blockLength);
        try
        {
            SendCore(NextOnewayId(), code, FlagsFor(TransactionFlags.Oneway, options), payload, CancellationToken.None,
                new RecordContext(0, 0, CallStatus.Ok, block.AsMemory(0, blockLength)));
        }
        finally
        {
            ReturnMetadataBlock(block);
        }
    }

    /// <summary>Sends a oneway message with per-call <paramref name="options"/>, waiting asynchronously while the peer's region is full.</summary>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="payload">The bytes to send; may be empty. Not used after the returned task completes.</param>
    /// <param name="options">Deadline, metadata and clear-on-free for this message; <c>null</c>: none.</param>
    /// <param name="cancellationToken">Cancels waiting for room; nothing is sent then.</param>
    /// <returns>Completes once the message is published.</returns>
    /// <exception cref="MessageTooLargeException">The message is larger than the peer's oneway quota and can never fit.</exception>
    /// <exception cref="RegionFullException">The peer's region (or its oneway quota) stayed full for <see cref="PageRangeOptions.RegionFullTimeout"/>.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled before the message could be placed.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    public ValueTask SendOnewayAsync(uint code, ReadOnlyMemory<byte> payload, PageRangeCallOptions? options, CancellationToken cancellationToken = default) =>
        options is null ? SendOnewayAsync(code, payload, cancellationToken) : SendOnewayWithOptionsAsync(code, payload, options, cancellationToken);

    private async ValueTask SendOnewayWithOptionsAsync(uint code, ReadOnlyMemory<byte> payload, PageRangeCallOptions options, CancellationToken cancellationToken)
    {
        byte[]? block = RentMetadataBlock(options, Activity.Current, out int blockLength);
        try
        {
            ulong id = NextOnewayId();
            TransactionFlags flags = FlagsFor(TransactionFlags.Oneway, options);
            var context = new RecordContext(0, 0, CallStatus.Ok, block.AsMemory(0, blockLength));
            if (!TrySendNow(id, code, flags, payload.Span, context))
            {
                await SendSlowAsync(id, code, flags, payload, context, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            ReturnMetadataBlock(block);
        }
    }

    /// <summary>
    /// Whether calls are traced (the activity source has listeners) or measured (client-call metrics are on): then a call
    /// goes through <see cref="CallObserved"/>, which a call committed straight from a reservation would bypass.
    /// </summary>
    internal static bool CallsObserved => PageRangeTracing.Source.HasListeners() || PageRangeMetrics.ClientCallObserved;

    private Transaction CallObserved(
        uint code, ReadOnlySpan<byte> payload, CallChain chain, PageRangeCallOptions? options, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        TimeSpan? limit = LimitByDeadline(options, timeout);
        long started = Stopwatch.GetTimestamp();
        Activity? activity = PageRangeTracing.StartClient(code, Name);
        byte[]? block = null;
        using CancellationTokenSource? byDeadline = DeadlineSource(options, cancellationToken);
        try
        {
            RecordContext context = ContextFor(chain);
            block = RentMetadataBlock(options, activity, out int blockLength);
            Transaction reply = CallCore(code, payload, FlagsFor(TransactionFlags.TwoWay, options), context with { Metadata = block.AsMemory(0, blockLength) },
                limit, byDeadline?.Token ?? cancellationToken);
            PageRangeMetrics.RecordClientCall(CallStatus.Ok, started, payload.Length, reply.Length);
            return reply;
        }
        catch (OperationCanceledException cancelled) when (byDeadline is { IsCancellationRequested: true } && !cancellationToken.IsCancellationRequested)
        {
            TimeoutException late = DeadlinePassed(options!, cancelled);
            ObserveFailure(activity, late, started, payload.Length);
            throw late;
        }
        catch (Exception error)
        {
            ObserveFailure(activity, error, started, payload.Length);
            throw;
        }
        finally
        {
            activity?.Dispose();
            ReturnMetadataBlock(block);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Transaction> CallObservedAsync(
        uint code, ReadOnlyMemory<byte> payload, CallChain chain, PageRangeCallOptions? options, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        TimeSpan? limit = LimitByDeadline(options, timeout);
        long started = Stopwatch.GetTimestamp();
        // Started inside an async method: Activity.Current changes only in this call's flow, not the caller's.
        Activity? activity = PageRangeTracing.StartClient(code, Name);
        byte[]? block = null;
        using CancellationTokenSource? byDeadline = DeadlineSource(options, cancellationToken);
        try
        {
            RecordContext context = ContextFor(chain);
            block = RentMetadataBlock(options, activity, out int blockLength);
            Transaction reply = await CallAsyncCore(code, payload, FlagsFor(TransactionFlags.TwoWay, options),
                context with { Metadata = block.AsMemory(0, blockLength) }, limit, byDeadline?.Token ?? cancellationToken).ConfigureAwait(false);
            PageRangeMetrics.RecordClientCall(CallStatus.Ok, started, payload.Length, reply.Length);
            return reply;
        }
        catch (OperationCanceledException cancelled) when (byDeadline is { IsCancellationRequested: true } && !cancellationToken.IsCancellationRequested)
        {
            TimeoutException late = DeadlinePassed(options!, cancelled);
            ObserveFailure(activity, late, started, payload.Length);
            throw late;
        }
        catch (Exception error)
        {
            ObserveFailure(activity, error, started, payload.Length);
            throw;
        }
        finally
        {
            activity?.Dispose();
            ReturnMetadataBlock(block);
        }
    }

    /// <summary>
    /// A source that fires at the deadline of <paramref name="options"/>, linked to <paramref name="cancellationToken"/>,
    /// when the deadline comes before the region's timeout: the copying send's wait for room knows no deadline (found by
    /// review: a gRPC call with a 100 ms deadline waited the region's whole timeout), and a deadline further off than that
    /// timeout leaves the wait as it was. Null when not needed. The reply's wait is bounded by the deadline already.
    /// </summary>
    private CancellationTokenSource? DeadlineSource(PageRangeCallOptions? options, CancellationToken cancellationToken)
    {
        if (options?.Deadline is not { } deadline)
        {
            return null;
        }
        TimeSpan left = deadline - DateTimeOffset.UtcNow;
        if (left >= _options.RegionFullTimeout)
        {
            return null;
        }
        CancellationTokenSource source = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        source.CancelAfter(left > TimeSpan.Zero ? left : TimeSpan.Zero);
        return source;
    }

    private static TimeoutException DeadlinePassed(PageRangeCallOptions options, OperationCanceledException cancelled) =>
        new($"The call's deadline {options.Deadline:O} passed before its reply (or before there was room for its request).", cancelled);

    private static void ObserveFailure(Activity? activity, Exception error, long started, int requestBytes)
    {
        if (activity is not null)
        {
            PageRangeTracing.SetError(activity, error);
        }
        CallStatus status = error switch
        {
            RemoteCallException remote => remote.Status,
            PageRangeStatusException failure => failure.Status,
            TimeoutException => CallStatus.DeadlineExceeded,
            OperationCanceledException => CallStatus.Cancelled,
            PeerDiedException => CallStatus.Unavailable,
            _ => CallStatus.Unknown,
        };
        PageRangeMetrics.RecordClientCall(status, started, requestBytes, responseBytes: -1);
    }

    /// <summary>The call's wait limit: its timeout, shortened to the deadline; a deadline already past fails now, and one
    /// further off than <see cref="s_longestTimer"/> is as none.</summary>
    internal TimeSpan? LimitByDeadline(PageRangeCallOptions? options, TimeSpan? timeout)
    {
        if (options?.Deadline is not { } deadline)
        {
            return timeout;
        }
        TimeSpan left = deadline - DateTimeOffset.UtcNow;
        if (left <= TimeSpan.Zero)
        {
            throw new TimeoutException($"The call's deadline {deadline:O} has passed; nothing was sent.");
        }
        if (left >= s_longestTimer)
        {
            // Further off than a timer holds (about 24.8 days), the deadline bounds nothing, as on the server (CallContext):
            // capped to the longest timer, it ended the call there, early and as late.
            return timeout;
        }
        TimeSpan limit = timeout ?? _options.CallTimeout;
        return limit == Timeout.InfiniteTimeSpan || left < limit ? left : limit;
    }

    private static TransactionFlags FlagsFor(TransactionFlags kind, PageRangeCallOptions? options) =>
        options is { ClearOnFree: true } ? kind | TransactionFlags.ClearOnFree : kind;

    /// <summary>
    /// The metadata block for a call with <paramref name="options"/> in <paramref name="activity"/>'s trace, encoded into
    /// a pooled array; null when there is nothing to carry.
    /// </summary>
    private static byte[]? RentMetadataBlock(PageRangeCallOptions? options, Activity? activity, out int length)
    {
        ActivityContext trace = activity?.Context ?? default;
        if (options?.HasBlockContent != true && trace == default)
        {
            length = 0;
            return null;
        }
        string? traceState = trace == default ? null : CallMetadataBlock.UsableTraceState(activity!.TraceStateString);
        length = CallMetadataBlock.GetLength(options, trace, traceState);
        byte[] block = ArrayPool<byte>.Shared.Rent(length);
        CallMetadataBlock.Write(block.AsSpan(0, length), options, trace, traceState);
        return block;
    }

    private static void ReturnMetadataBlock(byte[]? block)
    {
        if (block is not null)
        {
            ArrayPool<byte>.Shared.Return(block);
        }
    }
}

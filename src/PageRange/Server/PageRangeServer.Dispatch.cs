using System.Diagnostics;
using Microsoft.Extensions.Logging;
using PageRange.Diagnostics;
using PageRange.Transport;

namespace PageRange.Server;

/// <summary>Dispatch: from a session's receive loop to the pool, from a worker to the handler, and the error replies.</summary>
public sealed partial class PageRangeServer
{
    /// <summary>
    /// Runs a received transaction's handler on this thread if it has been fast (<see cref="PageRangeServerOptions.RunFastHandlersInline"/>),
    /// else hands it to the pool; while stopping, answers it at once instead.
    /// </summary>
    /// <param name="session">The client it came from.</param>
    /// <param name="transaction">The transaction, live.</param>
    /// <param name="mayRunInline">Whether this thread may run the handler: <see langword="false"/> for a rescue's
    /// receiver, which stands in for a session thread held by an inline run and must stay free to receive.</param>
    internal void Dispatch(ClientSession session, Transaction transaction, bool mayRunInline = true)
    {
        // Counted before the stop is looked at (a locked increment, then the load): a stop either finds this call in
        // flight (it waits for it, and cancels it when its grace period ends) or this call finds the stop. Looked at
        // first, a call could start after a stop found none in flight, and run with no grace period and no cancellation
        // while the stop waited for its session (found by review).
        Interlocked.Increment(ref _inFlight);
        if (_stopping)
        {
            using (transaction)
            {
                if (transaction.IsTwoWay)
                {
                    ServerReplies.ReplyError(transaction, CallStatus.Unavailable, "The server is shutting down and takes no new calls.");
                }
            }
            if (Interlocked.Decrement(ref _inFlight) == 0)
            {
                Volatile.Read(ref _drained)?.TrySetResult();
            }
            return;
        }
        session.OnDispatched();
        // Only when nothing else of this client is ready: calls its threads sent at once still run side by side on the
        // workers, and this thread receives the next of them at once.
        if (mayRunInline && _options.RunFastHandlersInline && !session.Connection.HasReadyTransactions
            && _registry.TryGet(transaction.Code, out ServerHandler? handler) && handler!.Timing.RunsInline)
        {
            RunInline(session, transaction, handler);
            return;
        }
        _pool.Enqueue(new ServerWorkItem(session, transaction));
    }

    /// <summary>
    /// Runs the handler on the receiving thread (binder's looper runs what it read): no hand-off to a worker, whose
    /// wake-up costs tens of microseconds on a VM. The server's watch rescues a run that lasts (see
    /// <see cref="WatchInlineRuns"/>), so the client's next calls are received meanwhile.
    /// </summary>
    private void RunInline(ClientSession session, Transaction transaction, ServerHandler handler)
    {
        long started = Stopwatch.GetTimestamp();
        session.BeginInline(started);
        try
        {
            WatchInlineRuns();
            // Never throws (see Run): the handler's synchronous part runs here; an asynchronous rest where it resumes.
            _ = DispatchAsync(session, transaction);
        }
        finally
        {
            long elapsed = Stopwatch.GetTimestamp() - started;
            session.EndInline();
            handler.Timing.Record(elapsed, inline: true);
        }
    }

    /// <summary>
    /// Runs a nested call on the thread that waits in its chain (the connection calls this there), to its end: that
    /// thread goes back to waiting for its own reply only once the nested call is answered.
    /// </summary>
    private void RunNested(ClientSession session, Transaction transaction)
    {
        Interlocked.Increment(ref _inFlight);
        session.OnDispatched();
        DispatchAsync(session, transaction).GetAwaiter().GetResult();
    }

    /// <summary>A worker runs one item: the handler, inline; an asynchronous handler's rest runs where it resumes.</summary>
    private void Run(ServerWorkItem item)
    {
        // Timed up to the handler's return or first real await (read before: the run frees the transaction), so the
        // handler may run inline once its runs are fast (HandlerTiming).
        ServerHandler? handler = null;
        long started = _options.RunFastHandlersInline && _registry.TryGet(item.Transaction.Code, out handler) ? Stopwatch.GetTimestamp() : 0;
        // DispatchAsync never throws: whatever happens ends in a reply (or a report) and the transaction's release.
        _ = DispatchAsync(item.Session, item.Transaction);
        handler?.Timing.Record(Stopwatch.GetTimestamp() - started, inline: false);
    }

    private async Task DispatchAsync(ClientSession session, Transaction transaction)
    {
        CallContext? context = null;
        uint code = transaction.Code;
        bool oneway = transaction.IsOneway;
        // Observed only when someone listens: otherwise neither the clock nor the tracer is touched.
        long started = PageRangeMetrics.ServerCallObserved ? Stopwatch.GetTimestamp() : 0;
        int requestBytes = started != 0 ? transaction.Length : 0;
        Activity? activity = null;
        CallStatus outcome = CallStatus.Ok;
        try
        {
            // In the try: a listener that throws fails the call, and the transaction is still released below.
            activity = PageRangeTracing.StartServer(code, Name, transaction.TraceContext);
            if (session.StoppedReading)
            {
                // Its connection is being closed: the work of a call whose reply it would not read is wasted.
                outcome = CallStatus.Unavailable;
                return;
            }
            if (!_registry.TryGet(code, out ServerHandler? handler))
            {
                outcome = CallStatus.Unimplemented;
                Fail(session, transaction, CallStatus.Unimplemented, $"No handler is mapped to code {code} on server '{Name}'.");
                return;
            }
            if (handler!.OnewayOnly && !oneway)
            {
                outcome = CallStatus.FailedPrecondition;
                Fail(session, transaction, CallStatus.FailedPrecondition, $"Code {code} on server '{Name}' takes oneway messages only.");
                return;
            }
            context = new CallContext(session.Info, session.Connection, transaction, _callsCancelled.Token);
            await handler.Invoke(transaction, context).ConfigureAwait(false);
        }
        catch (PageRangeStatusException failure)
        {
            outcome = failure.Status;
            Fail(session, transaction, failure.Status, failure.Message);
        }
        catch (RemoteCallException failure) when (session.Connection.IsPeerAlive)
        {
            // A call the handler made failed and the handler let it through: the caller gets that status, as a gRPC
            // server passes on an RpcException (a nested call too deep comes back this way). Its text is peer text,
            // bounded and cleaned already.
            outcome = failure.Status;
            Fail(session, transaction, failure.Status, failure.Message);
        }
        catch (OperationCanceledException) when (_callsCancelled.IsCancellationRequested)
        {
            outcome = CallStatus.Cancelled;
            Fail(session, transaction, CallStatus.Cancelled, "The call was cancelled: the server is shutting down.");
        }
        catch (OperationCanceledException) when (context is { Deadline: { } deadline } && (deadline <= DateTimeOffset.UtcNow || context.DeadlineTimerFired))
        {
            // The handler honoured the caller's deadline (CallContext.CancellationToken fired at it). A caller that gave
            // up already reads no reply, so none is sent then.
            outcome = CallStatus.DeadlineExceeded;
            if (session.Connection.IsPeerAlive && !IsCallCancelled(transaction))
            {
                Fail(session, transaction, CallStatus.DeadlineExceeded, $"The deadline of the call (code {code}) passed while its handler ran.");
            }
        }
        catch (OperationCanceledException) when (!session.Connection.IsPeerAlive || IsCallCancelled(transaction))
        {
            // The caller gave up or is gone: nobody reads a reply.
            outcome = CallStatus.Cancelled;
        }
        catch (Exception error) when (!session.Connection.IsPeerAlive && error is PageRangeException or ObjectDisposedException)
        {
            // The client died under the handler (its reply or nested call failed): the session reports the death.
            outcome = CallStatus.Unavailable;
        }
#pragma warning disable CA1031 // Any exception of a handler is the call's failure, never the server's.
        catch (Exception error)
#pragma warning restore CA1031
        {
            PageRangeLog.HandlerFailed(_logger, error, Name, session.Info.Pid, code);
            Raise(CallFailed, new CallFailedEventArgs(session.Info, code, oneway, error));
            outcome = CallStatus.Internal;
            Fail(session, transaction, CallStatus.Internal, _options.IncludeExceptionDetails
                ? $"The handler of code {code} failed: {error.GetType().FullName}: {error.Message}"
                : $"The server failed the call (code {code}).");
        }
        finally
        {
            try
            {
                if (activity is not null)
                {
                    if (outcome != CallStatus.Ok)
                    {
                        PageRangeTracing.SetError(activity, outcome, $"The call ended with status {outcome}.");
                    }
                    activity.Dispose();
                }
                if (started != 0)
                {
                    PageRangeMetrics.RecordServerCall(outcome, started, requestBytes);
                }
            }
            finally
            {
                // Whatever a telemetry listener does above (found by review: one that threw left the buffer and the
                // in-flight count held, so the caller waited and every later stop waited out its grace period).
                context?.End();
                // Frees the buffer; for a oneway message it releases the client's next one (binder's rule). A two-way
                // call nobody replied to gets an error reply from the connection.
                transaction.Dispose();
                session.OnCompleted();
                if (Interlocked.Decrement(ref _inFlight) == 0 && _stopping)
                {
                    Volatile.Read(ref _drained)?.TrySetResult();
                }
            }
        }
    }

    private static bool IsCallCancelled(Transaction transaction)
    {
        try
        {
            return transaction.CallCancelled.IsCancellationRequested;
        }
        catch (ObjectDisposedException)
        {
            return true;
        }
    }

    private static void Fail(ClientSession session, Transaction transaction, CallStatus status, string message)
    {
        _ = session;
        PageRangeMetrics.RecordServerCallFailed(status);
        if (transaction.IsLive && transaction.IsTwoWay)
        {
            ServerReplies.ReplyError(transaction, status, message);
        }
    }
}

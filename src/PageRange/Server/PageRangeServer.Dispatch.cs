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
        CallSlot slot = CallSlot.None;
        if (transaction.IsTwoWay)
        {
            // The fast path: below the client's limit with nothing of it queued, one compare-exchange.
            slot = session.CallLimit.TryTakeSlot() ? CallSlot.Held : CallSlot.None;
            if (slot == CallSlot.None && !TryAdmitAtLimit(session, transaction, out slot))
            {
                // Queued (it runs when one of its client's calls ends) or answered already; never waited for here: this
                // thread goes on receiving the client's messages, which its running calls may be waiting for.
                return;
            }
        }
        // Only when nothing else of this client is ready: calls its threads sent at once still run side by side on the
        // workers, and this thread receives the next of them at once.
        if (mayRunInline && _options.RunFastHandlersInline && !session.Connection.HasReadyTransactions
            && _registry.TryGet(transaction.Code, out ServerHandler? handler) && handler!.Timing.RunsInline)
        {
            RunInline(session, transaction, handler, slot);
            return;
        }
        _pool.Enqueue(new ServerWorkItem(session, transaction, slot));
    }

    /// <summary>
    /// A two-way call found its client at <see cref="PageRangeServerOptions.MaxConcurrentCallsPerClient"/>: a nested
    /// call the client makes in a chain we are calling it in runs beside the limit (the calls waiting for it hold the
    /// slots), as many at once as the limit itself; any other waits in the client's queue, or is refused when that is
    /// full.
    /// </summary>
    /// <returns>Whether the call runs now (<paramref name="slot"/> says what it holds of the limit); if
    /// not, it was queued or answered.</returns>
    private bool TryAdmitAtLimit(ClientSession session, Transaction transaction, out CallSlot slot)
    {
        slot = CallSlot.None;
        ClientCallLimiter limit = session.CallLimit;
        // Only a chain one of our calls waits in: a client cannot skip the limit by marking its calls nested. And only
        // as many as the limit: a client that learnt the chain from our call's record and leaves that call unanswered
        // could otherwise send any number of calls "nested" in it while we wait (found by review); an honest chain has
        // one nested call at a time per call of ours waiting in it.
        if (transaction.Depth > 0 && session.Connection.HasCallWaitingInChain(transaction.ChainId) && limit.TryTakeNested())
        {
            slot = CallSlot.Nested;
            return true;
        }
        switch (limit.Admit(transaction))
        {
            case ClientCallLimiter.Admission.Run:
                slot = CallSlot.Held;
                return true;
            case ClientCallLimiter.Admission.Queued:
                PageRangeMetrics.RecordServerCallQueued();
                if (_logger.IsEnabled(LogLevel.Information) && _callQueuedLog.TryTake(out long notLoggedBefore))
                {
                    PageRangeLog.ClientCallsQueued(_logger, Name, session.Info.Pid, limit.Limit, limit.Queued, notLoggedBefore);
                }
                // A slot may have come back between the look that found none and the queueing (see ClientCallLimiter).
                RunQueuedCalls(session);
                return false;
            case ClientCallLimiter.Admission.Refused:
                if (_logger.IsEnabled(LogLevel.Warning) && _callRefusedLog.TryTake(out notLoggedBefore))
                {
                    PageRangeLog.ClientCallRefused(_logger, Name, session.Info.Pid, transaction.Code, limit.Limit, limit.QueueLimit, notLoggedBefore);
                }
                Fail(session, transaction, CallStatus.ResourceExhausted,
                    $"Server '{Name}' refused the call (code {transaction.Code}): this client has {limit.Limit} calls running and " +
                    $"{limit.QueueLimit} waiting, its most (MaxConcurrentCallsPerClient, MaxQueuedCallsPerClient).");
                EndUnrun(session, transaction);
                return false;
            default:
                // The session ended under a rescue's receive: nobody reads a reply.
                EndUnrun(session, transaction);
                return false;
        }
    }

    /// <summary>Hands the client's queued calls the slots free now, oldest first (after a call ended, or one queued).</summary>
    private void RunQueuedCalls(ClientSession session)
    {
        ClientCallLimiter limit = session.CallLimit;
        while (limit.TryTakeQueued(out Transaction transaction))
        {
            if (!TryRunQueued(session, transaction))
            {
                // Answered without running: its slot goes to the next. (No recursion: a loop, however long the queue.)
                _ = limit.Release();
            }
        }
    }

    /// <summary>Hands a queued call that took a slot to the pool, unless it should not run any more.</summary>
    /// <returns>Whether it went to the pool; if not, it was answered and ended, and its slot is the caller's to give back.</returns>
    private bool TryRunQueued(ClientSession session, Transaction transaction)
    {
        if (_stopping)
        {
            Fail(session, transaction, CallStatus.Unavailable, "The server is shutting down and takes no new calls.");
        }
        else if (IsCallCancelled(transaction))
        {
            // The caller gave up while it waited: nobody reads a reply.
            PageRangeMetrics.RecordServerCallFailed(CallStatus.Cancelled);
        }
        else if (transaction.Deadline is { } deadline && deadline <= DateTimeOffset.UtcNow)
        {
            Fail(session, transaction, CallStatus.DeadlineExceeded,
                $"The deadline of the call (code {transaction.Code}) passed while it waited for this client's earlier calls (MaxConcurrentCallsPerClient).");
        }
        else
        {
            // Never inline: this is a worker ending another call, or the receiving thread, which must go on receiving.
            _pool.Enqueue(new ServerWorkItem(session, transaction, CallSlot.Held));
            return true;
        }
        EndUnrun(session, transaction);
        return false;
    }

    /// <summary>
    /// Answers every call queued for <paramref name="session"/> without running it: the server stops
    /// (<see cref="CallStatus.Unavailable"/>), or the session ended (<paramref name="close"/>; nothing is queued again).
    /// </summary>
    private void DropQueuedCalls(ClientSession session, bool close)
    {
        foreach (Transaction transaction in session.CallLimit.TakeAllQueued(close))
        {
            // Not to a client that stopped reading its replies: each reply would wait out ReplyRoomTimeout.
            if (session.Connection.IsPeerAlive && !session.StoppedReading)
            {
                Fail(session, transaction, CallStatus.Unavailable, _stopping
                    ? "The server is shutting down and takes no new calls."
                    : "The client's session on the server ended before the call ran.");
            }
            EndUnrun(session, transaction);
        }
    }

    /// <summary>Ends a call that was counted in (<see cref="Dispatch"/>) and never ran: frees it, counts it out.</summary>
    private void EndUnrun(ClientSession session, Transaction transaction)
    {
        transaction.Dispose();
        session.OnCompleted();
        if (Interlocked.Decrement(ref _inFlight) == 0 && _stopping)
        {
            Volatile.Read(ref _drained)?.TrySetResult();
        }
    }

    /// <summary>
    /// Runs the handler on the receiving thread (binder's looper runs what it read): no hand-off to a worker, whose
    /// wake-up costs tens of microseconds on a VM. The server's watch rescues a run that lasts (see
    /// <see cref="WatchInlineRuns"/>), so the client's next calls are received meanwhile.
    /// </summary>
    private void RunInline(ClientSession session, Transaction transaction, ServerHandler handler, CallSlot slot)
    {
        long started = Stopwatch.GetTimestamp();
        session.BeginInline(started);
        try
        {
            WatchInlineRuns();
            // Never throws (see Run): the handler's synchronous part runs here; an asynchronous rest where it resumes.
            _ = DispatchAsync(session, transaction, slot);
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
        // Not counted against the client's limit: the calls waiting for it (this thread's among them) hold the slots.
        DispatchAsync(session, transaction, CallSlot.None).GetAwaiter().GetResult();
    }

    /// <summary>A worker runs one item: the handler, inline; an asynchronous handler's rest runs where it resumes.</summary>
    private void Run(ServerWorkItem item)
    {
        // Timed up to the handler's return or first real await (read before: the run frees the transaction), so the
        // handler may run inline once its runs are fast (HandlerTiming).
        ServerHandler? handler = null;
        long started = _options.RunFastHandlersInline && _registry.TryGet(item.Transaction.Code, out handler) ? Stopwatch.GetTimestamp() : 0;
        // DispatchAsync never throws: whatever happens ends in a reply (or a report) and the transaction's release.
        _ = DispatchAsync(item.Session, item.Transaction, item.Slot);
        handler?.Timing.Record(Stopwatch.GetTimestamp() - started, inline: false);
    }

    /// <param name="session">The client it came from.</param>
    /// <param name="transaction">The transaction, live.</param>
    /// <param name="slot">What it holds of its client's call limit, given back (once) when it ends.</param>
    private async Task DispatchAsync(ClientSession session, Transaction transaction, CallSlot slot)
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
                // After the reply went (the dispose above), and last: the slot goes to the client's oldest queued call,
                // if any (a queued call is counted in flight, so the count above did not reach zero under it).
                if (slot == CallSlot.Held && session.CallLimit.Release())
                {
                    RunQueuedCalls(session);
                }
                else if (slot == CallSlot.Nested)
                {
                    session.CallLimit.ReleaseNested();
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

using System.Threading.Tasks.Sources;

namespace PageRange.Transport;

/// <summary>
/// One asynchronous receiver waiting for a transaction to become ready: a pooled, reusable
/// <see cref="IValueTaskSource{TResult}"/>, so a <c>ReceiveAsync</c> that has to wait allocates nothing in steady state.
/// </summary>
/// <remarks>
/// The connection keeps waiting receivers in a list under its slot lock; whoever takes a waiter out of that list (a
/// transaction becoming ready, the connection ending, the receiver's token) completes it, so it completes exactly once.
/// </remarks>
internal sealed class ReceiveWaiter : IValueTaskSource<bool>
{
    private ManualResetValueTaskSourceCore<bool> _core;

    internal ReceiveWaiter(PageRangeConnection owner)
    {
        Owner = owner;
        // Completed under the connection's slot lock, often by the reader thread: continuations must not run there.
        _core.RunContinuationsAsynchronously = true;
    }

    /// <summary>The connection whose list this waiter joins.</summary>
    internal PageRangeConnection Owner { get; }

    internal short Version => _core.Version;

    /// <summary>Prepares the waiter for its next wait.</summary>
    internal void Reset() => _core.Reset();

    /// <summary>Wakes the receiver: <paramref name="ready"/> says a transaction was queued (false: cancelled or the connection ended).</summary>
    internal void Complete(bool ready) => _core.SetResult(ready);

    bool IValueTaskSource<bool>.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}

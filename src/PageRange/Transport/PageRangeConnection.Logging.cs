using System.Diagnostics;
using Microsoft.Extensions.Logging;
using PageRange.Diagnostics;

namespace PageRange.Transport;

/// <summary>The connection's log events: its end (peer died or protocol violation) and region-full episodes.</summary>
public sealed partial class PageRangeConnection
{
    private int _regionFullWaiters;
    private long _regionFullSince;
    private long _regionFullSends;
    // Every send that found the region full, never reset (the count above is per episode): for tests.
    private long _regionFullSendsEver;

    /// <summary>Logs why the connection ended; a Dispose of our own is not an event.</summary>
    private void LogDeath(Exception? cause)
    {
        switch (cause)
        {
            case ObjectDisposedException:
                return;
            case ProtocolViolationException violation:
                if (_logger.IsEnabled(LogLevel.Error))
                {
                    // The message may carry values the peer wrote: sanitized like any peer text.
                    string where = WhereThrown(violation);
                    string what = PeerText.Sanitize(violation.Message);
                    PageRangeLog.ProtocolViolation(_logger, Name, PeerPid, where, what);
                }
                return;
            default:
                if (_logger.IsEnabled(LogLevel.Information))
                {
                    int pending = CountPendingCalls();
                PageRangeLog.PeerDied(_logger, Name, PeerPid, pending);
                }
                return;
        }
    }

    /// <summary>The method that threw <paramref name="error"/>, from the first frame of its stack trace, without file and line.</summary>
    private static string WhereThrown(Exception error)
    {
        string? trace = error.StackTrace;
        if (string.IsNullOrEmpty(trace))
        {
            return "unknown";
        }
        ReadOnlySpan<char> frame = trace.AsSpan().TrimStart();
        int end = frame.IndexOfAny('\n', '\r');
        frame = end >= 0 ? frame[..end] : frame;
        int file = frame.IndexOf(" in ", StringComparison.Ordinal);
        frame = file >= 0 ? frame[..file] : frame;
        return (frame.StartsWith("at ", StringComparison.Ordinal) ? frame[3..] : frame).ToString();
    }

    /// <summary>
    /// Logs a handshake that did not complete, on either side: refused (by us or by the peer) or failed (timeout, hang-up,
    /// malformed frame). A connect that found nobody listening or was cancelled by its caller is no event.
    /// </summary>
    /// <remarks>
    /// The connecting side has no credentials of the peer yet (<paramref name="peer"/> null): it logs pid and uid 0. A
    /// listener passes its <paramref name="rateLimit"/>, since any allowed process can make it fail handshakes in a loop;
    /// the connecting side passes none: it fails only the connects its own process makes.
    /// </remarks>
    internal static void LogHandshakeFailure(ILogger logger, string name, Exception error, Interop.PeerCredentials? peer, LogRateLimit? rateLimit = null)
    {
        if (!logger.IsEnabled(LogLevel.Warning)
            || error is not (ConnectionRefusedException or TimeoutException or ProtocolViolationException or PeerDiedException
                or SystemCallException or IOException or System.Net.Sockets.SocketException))
        {
            return;
        }
        long notLoggedBefore = 0;
        if (rateLimit is not null && !rateLimit.TryTake(out notLoggedBefore))
        {
            return;
        }
        int pid = peer?.Pid ?? 0;
        if (error is ConnectionRefusedException refused)
        {
            // A refusal may quote the peer's reason: peer text.
            PageRangeLog.HandshakeRefused(logger, name, pid, peer?.Uid ?? 0, PeerText.Sanitize(refused.Message), notLoggedBefore);
        }
        else
        {
            PageRangeLog.HandshakeFailed(logger, error, name, pid, PeerText.Sanitize(error.Message), notLoggedBefore);
        }
    }

    private int CountPendingCalls()
    {
        int pending = 0;
        foreach (PendingCall call in _calls)
        {
            if (Volatile.Read(ref call.Id) != 0 && !call.IsCompleted)
            {
                pending++;
            }
        }
        return pending;
    }

    /// <summary>A send begins to wait for room: the first waiter of an episode logs its beginning.</summary>
    /// <remarks>
    /// Slow path only. Two episodes that touch (the last waiter leaves as a new one enters) may share a count or a
    /// start time; the events are for people, and the metrics count every wait exactly.
    /// </remarks>
    private void EnterRegionFull(long bytes)
    {
        Interlocked.Increment(ref _regionFullSends);
        Interlocked.Increment(ref _regionFullSendsEver);
        if (Interlocked.Increment(ref _regionFullWaiters) == 1)
        {
            Volatile.Write(ref _regionFullSince, Stopwatch.GetTimestamp());
            PageRangeLog.RegionFullBegan(_logger, Name, PeerPid, bytes);
        }
    }

    /// <summary>A send stops waiting (sent, timed out, cancelled or failed): the last waiter logs the episode's end.</summary>
    private void LeaveRegionFull()
    {
        if (Interlocked.Decrement(ref _regionFullWaiters) == 0)
        {
            long sends = Interlocked.Exchange(ref _regionFullSends, 0);
            if (_logger.IsEnabled(LogLevel.Debug))
            {
                double waited = Stopwatch.GetElapsedTime(Volatile.Read(ref _regionFullSince)).TotalMilliseconds;
                PageRangeLog.RegionFullEnded(_logger, Name, PeerPid, waited, sends);
            }
        }
    }
}

using System.Diagnostics;

namespace PageRange.Server;

/// <summary>
/// The watch over handlers run inline (<see cref="PageRangeServerOptions.RunFastHandlersInline"/>): a session thread held
/// by a run longer than <see cref="StuckAfter"/> gets a rescue, another receiver for that client until the run ends.
/// </summary>
public sealed partial class PageRangeServer
{
    /// <summary>How long an inline run may hold its session's receiving before another thread receives for it.</summary>
    internal static readonly TimeSpan StuckAfter = TimeSpan.FromMilliseconds(2);

    private static readonly TimeSpan s_watchPeriod = TimeSpan.FromMilliseconds(1);
    private static readonly long s_stuckAfterTicks = (long)(StuckAfter.TotalSeconds * Stopwatch.Frequency);

    // Ticks of the watch that found no inline run before it stops ticking: a server whose handlers run on the pool, or
    // that is idle, wakes no thread every millisecond.
    private const int IdleTicksBeforeDisarm = 100;

    // Created on the first inline run; disposed when the server stops (_watchStopped, under the sessions lock).
    private Timer? _inlineWatch;
    private bool _watchStopped;
    private int _watchArmed;
    private int _watchTicking;
    private int _idleWatchTicks;
    private long _inlineRescues;
    // Sessions found stuck in one tick, rescued after the sessions lock is left; touched only by the tick (_watchTicking).
    private readonly List<(ClientSession Session, long Since)> _stuck = [];

    /// <summary>Rescues started for inline runs that lasted (each a receiver standing in for a held session thread), for tests.</summary>
    internal long InlineRescues => Interlocked.Read(ref _inlineRescues);

    /// <summary>Makes sure the watch ticks while an inline run may be going on; called by each run after it announced itself.</summary>
    /// <remarks>
    /// The run's announcement (<see cref="ClientSession.BeginInline"/>, a full fence) comes before this read of the flag,
    /// and the watch clears the flag with a fence before its last look at the sessions: so either the run sees the watch
    /// disarmed and arms it, or the watch's last look sees the run and keeps ticking.
    /// </remarks>
    private void WatchInlineRuns()
    {
        if (Volatile.Read(ref _watchArmed) == 0)
        {
            ArmWatch();
        }
    }

    private void ArmWatch()
    {
        if (Interlocked.Exchange(ref _watchArmed, 1) != 0)
        {
            return;
        }
        lock (_sessionsLock)
        {
            if (_watchStopped)
            {
                return;
            }
            if (_inlineWatch is null)
            {
                // No execution context captured: the watch is the server's, not the first caller's.
                using (ExecutionContext.SuppressFlow())
                {
                    _inlineWatch = new Timer(static state => ((PageRangeServer)state!).OnWatchTick(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                }
            }
            _inlineWatch.Change(s_watchPeriod, s_watchPeriod);
        }
    }

    private void OnWatchTick()
    {
        if (Interlocked.Exchange(ref _watchTicking, 1) != 0)
        {
            // The previous tick is still running (a starved timer thread caught up): one look is enough.
            return;
        }
        try
        {
            // LookForStuckRuns sets the idle count back whenever a run is going on.
            if (LookForStuckRuns() || ++_idleWatchTicks < IdleTicksBeforeDisarm)
            {
                return;
            }
            _idleWatchTicks = 0;
            lock (_sessionsLock)
            {
                if (!_watchStopped)
                {
                    _inlineWatch?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                }
            }
            Volatile.Write(ref _watchArmed, 0);
            Interlocked.MemoryBarrier();
            // A run that started before it could see the flag cleared did not arm the watch: look once more.
            if (LookForStuckRuns())
            {
                ArmWatch();
            }
        }
        finally
        {
            Volatile.Write(ref _watchTicking, 0);
        }
    }

    /// <summary>Rescues every session whose inline run lasted too long; returns whether any inline run is going on.</summary>
    private bool LookForStuckRuns()
    {
        long now = Stopwatch.GetTimestamp();
        bool running = false;
        lock (_sessionsLock)
        {
            foreach (ClientSession session in _sessions.Values)
            {
                long since = session.InlineSince;
                if (since == 0)
                {
                    continue;
                }
                running = true;
                if (now - since > s_stuckAfterTicks && !session.Rescuing)
                {
                    _stuck.Add((session, since));
                }
            }
        }
        if (running)
        {
            _idleWatchTicks = 0;
        }
        foreach ((ClientSession session, long since) in _stuck)
        {
            if (session.TryStartRescue(since))
            {
                Interlocked.Increment(ref _inlineRescues);
            }
        }
        _stuck.Clear();
        return running;
    }

    /// <summary>Stops the watch for good (the server is stopping: no inline run starts any more).</summary>
    private void StopWatch()
    {
        lock (_sessionsLock)
        {
            _watchStopped = true;
            _inlineWatch?.Dispose();
        }
    }
}

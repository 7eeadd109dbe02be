namespace PageRange.Diagnostics;

/// <summary>
/// A log line's rate limit, binder's printk rate limit: at most <see cref="Burst"/> lines per <see cref="Interval"/>;
/// the lines left out are counted, and the next line that goes out says how many. For lines a peer can cause at will
/// (a forged free, a refused handshake, a thread that cannot start), so a peer cannot flood the application's log.
/// </summary>
/// <remarks>Thread-safe; the events it limits are rare by nature, so a lock costs nothing that matters.</remarks>
internal sealed class LogRateLimit(int burst, TimeSpan interval)
{
    private readonly Lock _lock = new();
    private long _windowStart = long.MinValue;
    private int _linesInWindow;
    private long _notLogged;

    /// <summary>Lines per window.</summary>
    internal int Burst { get; } = burst;

    /// <summary>The window; settable for tests.</summary>
    internal TimeSpan Interval { get; set; } = interval;

    /// <summary>Whether this line goes out, and how many were left out since the last one that did.</summary>
    internal bool TryTake(out long notLoggedBefore)
    {
        lock (_lock)
        {
            notLoggedBefore = 0;
            long now = Environment.TickCount64;
            if (_windowStart == long.MinValue || now - _windowStart >= (long)Interval.TotalMilliseconds)
            {
                _windowStart = now;
                _linesInWindow = 0;
            }
            if (_linesInWindow >= Burst)
            {
                _notLogged++;
                return false;
            }
            _linesInWindow++;
            notLoggedBefore = _notLogged;
            _notLogged = 0;
            return true;
        }
    }
}

using Microsoft.Extensions.Logging;
using PageRange.Diagnostics;

namespace PageRange.Memory;

/// <summary>
/// Watches the system's memory pressure and makes a <see cref="Shrinker"/> reclaim Available pages when it rises:
/// the trigger the kernel gives binder's shrinker, rebuilt from Linux PSI, <c>MemAvailable</c> and the GC's memory load.
/// </summary>
/// <remarks>
/// <para>
/// Started by <see cref="Shrinker.StartMonitor"/> and stopped by <see cref="Dispose"/>; nothing polls before or after.
/// Every <see cref="ShrinkerOptions.PollingPeriod"/> it reads the signals on a thread-pool timer; when any crosses its
/// threshold it calls <see cref="Shrinker.Scan"/> for up to <see cref="ShrinkerOptions.MaxPagesPerScan"/> pages, and
/// when <see cref="ShrinkerOptions.IdleAge"/> is set it also calls <see cref="Shrinker.ScanIdle"/>. Polls never overlap.
/// </para>
/// <para>Thread safety: every member may be called from any thread.</para>
/// </remarks>
public sealed class MemoryPressureMonitor : IDisposable
{
    private readonly Shrinker _shrinker;
    private readonly ShrinkerOptions _options;
    private readonly Func<MemoryPressureReading> _read;
    private readonly ILogger _logger;

    // Held for a whole poll, so polls never overlap and Dispose waits for one in flight.
    private readonly Lock _pollLock = new();
    private Timer? _timer;
    private bool _disposed;

    private long _polls;
    private long _pressurePolls;
    private long _pagesFreedUnderPressure;
    private long _pagesFreedIdle;
    private MemoryPressureSignals _lastSignals;
    private MemoryPressureReading _lastReading;

    /// <summary>Creates a monitor that polls only when <see cref="Start"/> is called (tests call <see cref="Poll"/> instead).</summary>
    /// <param name="shrinker">The shrinker to drive.</param>
    /// <param name="options">Validated options; the monitor keeps them, so pass a copy.</param>
    /// <param name="read">Reads the signals; tests pass made-up readings.</param>
    internal MemoryPressureMonitor(Shrinker shrinker, ShrinkerOptions options, Func<MemoryPressureReading> read)
    {
        _shrinker = shrinker;
        _options = options;
        _read = read;
        _logger = PageRangeLog.CreateLogger(options.LoggerFactory, PageRangeLogEvents.MemoryCategory);
    }

    /// <summary>Whether a timer is polling: started, enabled and not yet disposed.</summary>
    public bool IsRunning
    {
        get
        {
            lock (_pollLock)
            {
                return _timer is not null && !_disposed;
            }
        }
    }

    /// <summary>How many polls have run.</summary>
    public long Polls => Interlocked.Read(ref _polls);

    /// <summary>How many polls found memory pressure.</summary>
    public long PressurePolls => Interlocked.Read(ref _pressurePolls);

    /// <summary>Pages reclaimed because of memory pressure.</summary>
    public long PagesFreedUnderPressure => Interlocked.Read(ref _pagesFreedUnderPressure);

    /// <summary>Pages reclaimed because they had been Available for <see cref="ShrinkerOptions.IdleAge"/>.</summary>
    public long PagesFreedIdle => Interlocked.Read(ref _pagesFreedIdle);

    /// <summary>The signals that crossed their thresholds at the last poll.</summary>
    public MemoryPressureSignals LastSignals
    {
        get
        {
            lock (_pollLock)
            {
                return _lastSignals;
            }
        }
    }

    /// <summary>The readings of the last poll.</summary>
    internal MemoryPressureReading LastReading
    {
        get
        {
            lock (_pollLock)
            {
                return _lastReading;
            }
        }
    }

    /// <summary>Starts the timer; the first poll comes one period from now.</summary>
    internal void Start()
    {
        lock (_pollLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_timer is not null)
            {
                return;
            }
            // Don't flow the starter's ExecutionContext (its AsyncLocals, its activity) into every poll.
            using (ExecutionContext.SuppressFlow())
            {
                _timer = new Timer(static state => ((MemoryPressureMonitor)state!).OnTimer(), this, Timeout.Infinite, Timeout.Infinite);
            }
            _timer.Change(_options.PollingPeriod, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>One poll: read the signals, decide, reclaim. What the timer runs, callable directly by tests.</summary>
    /// <returns>The signals that crossed their thresholds; <see cref="MemoryPressureSignals.None"/> after <see cref="Dispose"/>.</returns>
    internal MemoryPressureSignals Poll()
    {
        lock (_pollLock)
        {
            return _disposed ? MemoryPressureSignals.None : PollUnsynchronized();
        }
    }

    /// <summary>Stops polling and waits for a poll in flight; the shrinker may then be given a new monitor.</summary>
    public void Dispose()
    {
        lock (_pollLock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            // Under the poll lock, so OnTimer never re-arms a disposed timer.
            _timer?.Dispose();
        }
        _shrinker.OnMonitorDisposed(this);
    }

    private void OnTimer()
    {
        lock (_pollLock)
        {
            if (_disposed)
            {
                return;
            }
            PollUnsynchronized();
            // A one-shot timer re-armed after the poll: a slow poll delays the next instead of overlapping it.
            _timer!.Change(_options.PollingPeriod, Timeout.InfiniteTimeSpan);
        }
    }

    private MemoryPressureSignals PollUnsynchronized()
    {
        Interlocked.Increment(ref _polls);
        MemoryPressureReading reading = _read();
        MemoryPressureSignals signals = reading.Evaluate(_options);
        MemoryPressureSignals previous = _lastSignals;
        _lastReading = reading;
        _lastSignals = signals;
        if (signals != previous)
        {
            LogPressureChanged(signals, previous, reading);
        }

        if (signals != MemoryPressureSignals.None)
        {
            Interlocked.Increment(ref _pressurePolls);
            long toScan = Math.Min(_shrinker.Count(), _options.MaxPagesPerScan);
            if (toScan > 0)
            {
                Interlocked.Add(ref _pagesFreedUnderPressure, _shrinker.Scan(toScan));
            }
        }
        if (_options.IdleAge is { } idleAge)
        {
            Interlocked.Add(ref _pagesFreedIdle, _shrinker.ScanIdle(idleAge));
        }
        return signals;
    }

    /// <summary>Logs a change of the signals: only on a change, so a steady state writes nothing.</summary>
    private void LogPressureChanged(MemoryPressureSignals signals, MemoryPressureSignals previous, MemoryPressureReading reading)
    {
        // The check spares the two strings when nobody listens; CA1873 does not see a guard around a static log method.
        if (_logger.IsEnabled(LogLevel.Information))
        {
#pragma warning disable CA1873
            PageRangeLog.MemoryPressureChanged(
                _logger, signals.ToString(), previous.ToString(),
                reading.PsiSomeAvg10, reading.MemAvailableBytes, reading.MemTotalBytes, reading.GcMemoryLoadPercent);
#pragma warning restore CA1873
        }
    }
}

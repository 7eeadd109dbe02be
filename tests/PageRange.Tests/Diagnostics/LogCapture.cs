using Microsoft.Extensions.Logging;

namespace PageRange.Tests.Diagnostics;

/// <summary>
/// A real <see cref="ILoggerFactory"/> (Microsoft.Extensions.Logging's, every level on) whose one provider keeps every
/// event, so a test sees what an application's logging would: category, level, event id and formatted message.
/// </summary>
internal sealed class LogCapture : ILoggerProvider
{
    private readonly List<LogEntry> _entries = [];
    private int _disposed;

    internal LogCapture()
    {
        Factory = LoggerFactory.Create(builder => builder.SetMinimumLevel(LogLevel.Trace).AddProvider(this));
    }

    internal ILoggerFactory Factory { get; }

    internal LogEntry[] Entries
    {
        get
        {
            lock (_entries)
            {
                return [.. _entries];
            }
        }
    }

    /// <summary>The formatted messages, in order.</summary>
    internal string[] Messages => [.. Entries.Select(entry => entry.Message)];

    /// <summary>The events with id <paramref name="eventId"/>.</summary>
    internal LogEntry[] WithId(int eventId) => [.. Entries.Where(entry => entry.EventId.Id == eventId)];

    public ILogger CreateLogger(string categoryName) => new CapturingLogger(this, categoryName);

    public void Dispose()
    {
        // The factory may hand the dispose back to its providers, this one included: once is enough.
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Factory.Dispose();
        }
    }

    private void Add(LogEntry entry)
    {
        lock (_entries)
        {
            _entries.Add(entry);
        }
    }

    private sealed class CapturingLogger(LogCapture capture, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            capture.Add(new LogEntry(category, logLevel, eventId, formatter(state, exception), exception));
    }
}

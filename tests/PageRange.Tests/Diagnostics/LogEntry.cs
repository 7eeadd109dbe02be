using Microsoft.Extensions.Logging;

namespace PageRange.Tests.Diagnostics;

/// <summary>One event a <see cref="LogCapture"/> saw, formatted as a log provider would write it.</summary>
internal sealed record LogEntry(string Category, LogLevel Level, EventId EventId, string Message, Exception? Exception);

using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Transport;

/// <summary>
/// A connection's reader role, taken by a test so that no thread reads its inbound ring until <see cref="Release"/>.
/// Disposing it releases the role if the test has not (a failed assertion must not leave the connection unread).
/// </summary>
internal sealed class ReaderRoleHold : IDisposable
{
    private PageRangeConnection? _connection;

    private ReaderRoleHold(PageRangeConnection connection) => _connection = connection;

    /// <summary>Takes the role once the thread that holds it (the background reader, between passes) lets go.</summary>
    public static async Task<ReaderRoleHold> TakeAsync(PageRangeConnection connection)
    {
        await WaitUntilAsync(connection.TryHoldReaderRoleForTest, "the reader role was taken");
        return new ReaderRoleHold(connection);
    }

    /// <summary>Gives the role back; the first call only.</summary>
    public void Release() => Interlocked.Exchange(ref _connection, null)?.ReleaseReaderRoleForTest();

    public void Dispose() => Release();
}

using PageRange.Transport;

namespace PageRange.Server;

/// <summary>The server's error replies: a status and a bounded message for the caller's <see cref="RemoteCallException"/>.</summary>
internal static class ServerReplies
{
    /// <summary>Replies to <paramref name="transaction"/> with an error; quietly does nothing if the call was answered or the caller is gone.</summary>
    internal static void ReplyError(Transaction transaction, CallStatus status, string message)
    {
        try
        {
            transaction.ReplyError(status, message);
        }
        catch (InvalidOperationException)
        {
            // The handler replied before it failed: the caller has its answer.
        }
        catch (PageRangeException)
        {
            // The caller is gone, or its region has no room even for the error: disposing the call tells it over the
            // control socket (binder's BR_FAILED_REPLY).
        }
    }
}

using System.Text;
using PageRange.Transport;

namespace PageRange.Server;

/// <summary>The server's error replies: a status and a bounded message for the caller's <see cref="RemoteCallException"/>.</summary>
internal static class ServerReplies
{
    /// <summary>Replies to <paramref name="transaction"/> with an error.</summary>
    /// <exception cref="InvalidOperationException">The call was answered already.</exception>
    /// <exception cref="PageRangeException">The caller is gone or has no room for the reply.</exception>
    internal static void ReplyError(Transaction transaction, CallStatus status, string message)
    {
        string bounded = PeerText.Sanitize(message);
        // TODO(10): carry the status on the wire once the connection's record v2 (Transaction.ReplyError) is merged.
        _ = status;
        transaction.Connection.SendReply(transaction.Slot, Encoding.UTF8.GetBytes(bounded), isError: true);
    }
}

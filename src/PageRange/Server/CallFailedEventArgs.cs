namespace PageRange.Server;

/// <summary>A handler threw something other than <see cref="PageRangeStatusException"/>: the caller got <see cref="CallStatus.Internal"/>.</summary>
public sealed class CallFailedEventArgs : EventArgs
{
    internal CallFailedEventArgs(ClientInfo client, uint code, bool oneway, Exception exception)
    {
        Client = client;
        Code = code;
        IsOneway = oneway;
        Exception = exception;
    }

    /// <summary>The caller.</summary>
    public ClientInfo Client { get; }

    /// <summary>The call's code.</summary>
    public uint Code { get; }

    /// <summary>Whether it was a oneway message (nobody got an error reply).</summary>
    public bool IsOneway { get; }

    /// <summary>What the handler threw; never sent to the caller unless <see cref="PageRangeServerOptions.IncludeExceptionDetails"/>.</summary>
    public Exception Exception { get; }
}

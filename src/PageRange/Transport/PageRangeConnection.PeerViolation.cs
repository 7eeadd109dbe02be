namespace PageRange.Transport;

/// <summary>A protocol above the transport (gRPC over PageRange) reporting that the peer broke it.</summary>
public sealed partial class PageRangeConnection
{
    /// <summary>
    /// Ends the connection because the peer broke a protocol carried over it (a malformed frame of a layer above the
    /// transport): the same close as a transport violation, so a server's session ends as a protocol violation and
    /// only this connection goes.
    /// </summary>
    internal void ClosePeerViolation(ProtocolViolationException violation)
    {
        ArgumentNullException.ThrowIfNull(violation);
        CloseForViolation(violation);
    }
}

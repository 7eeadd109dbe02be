namespace PageRange.Transport;

/// <summary>
/// A side closes an established connection on purpose and says why (a server shutting down, a client it refused); it
/// closes the socket right after sending this. The other side's <see cref="PeerDiedException"/> carries the reason.
/// </summary>
/// <param name="Reason">A short sentence for the other side's exception, e.g. "the server is shutting down".</param>
internal sealed record GoodbyeMessage(string Reason) : ControlMessage
{
    /// <inheritdoc/>
    public override ControlMessageKind Kind => ControlMessageKind.Goodbye;
}

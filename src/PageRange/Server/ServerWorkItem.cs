using PageRange.Transport;

namespace PageRange.Server;

/// <summary>One received transaction waiting for a worker, and the client it came from.</summary>
/// <param name="Session">The client it came from.</param>
/// <param name="Transaction">The transaction, live.</param>
/// <param name="HoldsCallSlot">Whether it holds one of its client's call slots (<see cref="ClientCallLimiter"/>), given back when it ends.</param>
internal readonly record struct ServerWorkItem(ClientSession Session, Transaction Transaction, bool HoldsCallSlot);

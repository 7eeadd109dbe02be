using PageRange.Transport;

namespace PageRange.Server;

/// <summary>One received transaction waiting for a worker, and the client it came from.</summary>
/// <param name="Session">The client it came from.</param>
/// <param name="Transaction">The transaction, live.</param>
/// <param name="Slot">What it holds of its client's call limit (<see cref="ClientCallLimiter"/>), given back when it ends.</param>
internal readonly record struct ServerWorkItem(ClientSession Session, Transaction Transaction, CallSlot Slot);

/// <summary>What a two-way call holds of its client's call limit (<see cref="ClientCallLimiter"/>) until it ends.</summary>
internal enum CallSlot : byte
{
    /// <summary>Nothing: a oneway message, or a nested call run on a thread waiting in its chain.</summary>
    None,

    /// <summary>One of the client's slots (<see cref="ClientCallLimiter.Release"/>).</summary>
    Held,

    /// <summary>One of the nested calls run beside the limit while the server calls the client back in their chain
    /// (<see cref="ClientCallLimiter.ReleaseNested"/>).</summary>
    Nested,
}

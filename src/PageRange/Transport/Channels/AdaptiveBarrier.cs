namespace PageRange.Transport;

/// <summary>
/// The adaptive park barrier's states and thresholds (<see cref="Doorbell"/>'s remarks): a consumer that parks as a
/// rule (spin-then-park, park) issues the barrier before its parks while it took at least <see cref="OnAfter"/> records
/// between two parks (a stream: a pack of up to 56 small oneways is one record), where one barrier spares the producer
/// a fence per message; it stops after <see cref="OffAfterParks"/> parks in a row that each followed fewer than
/// <see cref="OffBelow"/> records.
/// </summary>
/// <remarks>
/// Calls do not turn it on: a small call comes through the direct lines (no record), a larger one is a record, and a
/// call whose wait ends in a park would pay the barrier's system call and the interrupt of the peer's core in its own
/// latency. On the EPYC guest that doubled the PingPong sample's synchronous p99 (23 -> 24-54 µs) when waits that ended
/// in the spin counted as well. Not off after one quiet park: switching off costs a barrier too.
/// </remarks>
internal static class AdaptiveBarrier
{
    internal const int Off = 0;
    internal const int On = 1;
    internal const int TurningOff = 2;

    /// <summary>Records taken since the last park from which the next park turns the barrier on.</summary>
    internal const int OnAfter = 256;

    /// <summary>Records taken since the last park below which a park counts as quiet.</summary>
    internal const int OffBelow = 64;

    /// <summary>Quiet parks in a row after which the barrier turns off.</summary>
    internal const int OffAfterParks = 3;
}

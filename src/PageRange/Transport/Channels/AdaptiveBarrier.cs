namespace PageRange.Transport;

/// <summary>
/// The adaptive park barrier's states and thresholds (<see cref="Doorbell"/>'s remarks): a consumer that parks as a
/// rule (spin-then-park, park) issues the barrier before its parks while, between two parks, it did at least
/// <see cref="OnAfter"/> units of work (a wait that ended in the spin, a record taken: a stream, or calls answered
/// within the spin), where one barrier spares the producer a fence per message; it stops after
/// <see cref="OffAfterParks"/> parks in a row that each followed fewer than <see cref="OffBelow"/> (a peer that makes
/// it park at nearly every call), where the barrier's system call and interrupt would cost more than the fences it
/// saves. Not after one such park: switching off costs a barrier too, and a reader that parks twice in quick succession
/// now and then (both processes descheduled) would switch at nearly every park.
/// </summary>
/// <remarks>
/// A pack of up to 56 small oneways is one record, so a stream's reader takes hundreds between parks; a call parked for
/// is one wait and a record (an inline call's payload slots count too: up to 3 more).
/// </remarks>
internal static class AdaptiveBarrier
{
    internal const int Off = 0;
    internal const int On = 1;
    internal const int TurningOff = 2;

    /// <summary>Waits and records since the last park from which the next park turns the barrier on.</summary>
    internal const int OnAfter = 64;

    /// <summary>Waits and records since the last park below which the next park turns the barrier off.</summary>
    internal const int OffBelow = 8;

    /// <summary>Parks in a row, each after fewer than <see cref="OffBelow"/>, after which the barrier turns off.</summary>
    internal const int OffAfterParks = 3;
}

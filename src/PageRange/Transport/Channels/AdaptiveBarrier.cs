namespace PageRange.Transport;

/// <summary>
/// The adaptive park barrier's states and thresholds (<see cref="Doorbell"/>'s remarks): a spin-then-park consumer issues
/// the barrier before its parks while at least <see cref="OnAfterWaits"/> of its waits ended in the spin between two
/// parks (a stream, or calls answered within the spin), where one barrier spares the producer a fence per message, and
/// stops while fewer than <see cref="OffBelowWaits"/> did (a peer that makes it park at nearly every wait), where the
/// barrier's system call and interrupt would cost more than the fences it saves.
/// </summary>
internal static class AdaptiveBarrier
{
    internal const int Off = 0;
    internal const int On = 1;
    internal const int TurningOff = 2;

    /// <summary>Waits since the last park from which the next park turns the barrier on.</summary>
    internal const int OnAfterWaits = 32;

    /// <summary>Waits since the last park below which the next park turns the barrier off.</summary>
    internal const int OffBelowWaits = 4;
}

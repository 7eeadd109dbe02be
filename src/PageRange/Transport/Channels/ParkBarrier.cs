namespace PageRange.Transport;

/// <summary>
/// The heavy half of an asymmetric Dekker fence between a ring's producer, which publishes and then looks whether a
/// consumer is parked, and a consumer about to park: the consumer pays for both sides with one
/// <c>membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)</c> per park, so the producer's publish (a record, a packed oneway)
/// needs no fence at all. The same holds for the free ring, whose producer is the receiver and whose consumer is the
/// writer waiting for room: a writer that issues the barrier before it parks there lets the receiver publish its frees
/// without a fence.
/// </summary>
/// <remarks>
/// <para>
/// The doorbell's protocol is Dekker's (see <see cref="Doorbell"/>): the producer stores the tail and loads the parked
/// count; the consumer increments the parked count and loads the tail. Each side needs its store ordered before its
/// load, or both can miss the other (the producer sees nobody parked, the consumer sees no new tail, and it sleeps
/// through a message until the park timeout). A fence on the producer's side costs every message: on x86 it waits for
/// the message's stores to reach lines the consumer has just read (measured: about half the oneway rate of 64-byte
/// messages, see benchmarks/README.md). Parking is rare and already costs a system call, so the consumer takes the
/// producer's half: after its parked increment (a locked instruction, globally visible) it issues a global expedited
/// membarrier, which returns only after every running thread of every registered process has executed a full barrier
/// (a thread not running had one in its context switch). A producer thread's publish then either came before that
/// barrier (so it is visible to the consumer's re-check after the call) or after it (so its load of the parked count,
/// later in program order, sees the increment and wakes the consumer).
/// </para>
/// <para>
/// Only a side that busy-spins announces it: it parks only in the rare waits that do not follow its strategy (its
/// writer only when the peer's region is full), so the barrier costs it nothing in practice, while a side that parks as
/// a rule would pay an inter-processor interrupt (2-10 µs) in every park (tried for every strategy once: spin-then-park's
/// p99 round trip tripled with a fast peer). A round trip between two busy-spinning sides thus makes no fence at all:
/// four fewer per call (two publishes, two frees), a tenth of a call's own work in the one-thread probe.
/// </para>
/// <para>
/// Both halves must be present: a side announces in its region header (<see cref="RegionHeaderLayout.ParkBarrierFlag"/>)
/// that its waiters issue the barrier, and its peer rings without a fence (publishing records into that region, frees
/// into its own) only if the flag is set and its own process is registered (so the barrier reaches its threads). A peer
/// that sets the flag and does not issue the barrier only delays its own wakes (the futex timeout still ends every
/// park); the other side needs nothing from it.
/// </para>
/// </remarks>
internal static class ParkBarrier
{
    /// <summary>Whether this process can issue the barrier (the kernel has the command and no filter refuses it).</summary>
    internal static bool CanIssue { get; } = Interop.CanIssueGlobalExpeditedMembarrier();

    /// <summary>Whether this process is registered for the barrier, so a peer's barrier reaches its threads.</summary>
    internal static bool Registered { get; } = Interop.TryRegisterGlobalExpeditedMembarrier();

    /// <summary>Issues the barrier: returns once every running thread of every registered process has executed a full fence.</summary>
    /// <exception cref="SystemCallException">The kernel refused.</exception>
    internal static void Issue() => Interop.GlobalExpeditedMembarrier();
}

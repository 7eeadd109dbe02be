namespace PageRange.Tests.Infrastructure;

/// <summary>
/// Two threads meet at numbered phases, spinning (a blocking barrier's wake-up would spread the race out), and backing
/// off to yielding once the other thread is late: it is not running then (an overloaded machine), and a waiter that
/// only spins keeps it off the core it needs, so each meeting took scheduler time slices (96 rounds of a race in 15 s
/// beside two busy loops on two cores).
/// </summary>
internal sealed class SpinRendezvous
{
    // The looks made spinning before backing off: a few hundred microseconds, in which a running partner arrives. Only
    // these are tight (a look every pause); a back-off's growing spins and yields would skew the two threads' start.
    private const int SpinLooks = 10_000;

    private int _arrived;
    private int _phase;

    public void Arrive(int phase)
    {
        if (Interlocked.Increment(ref _arrived) == 2)
        {
            _arrived = 0;
            Volatile.Write(ref _phase, phase);
            return;
        }
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var backOff = new SpinWait();
        int looks = 0;
        while (Volatile.Read(ref _phase) != phase)
        {
            if (looks < SpinLooks)
            {
                looks++;
                Thread.SpinWait(1);
            }
            else
            {
                // Yields, and now and then sleeps a millisecond (SpinWait's schedule), so the late partner gets a core.
                backOff.SpinOnce();
            }
            if (clock.Elapsed > TestTimeouts.Long)
            {
                throw new TimeoutException($"the other thread never reached phase {phase}");
            }
        }
    }
}

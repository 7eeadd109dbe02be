namespace PageRange.Tests.Infrastructure;

/// <summary>Two threads meet at numbered phases, spinning (a blocking barrier's wake-up would spread the race out).</summary>
internal sealed class SpinRendezvous
{
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
        while (Volatile.Read(ref _phase) != phase)
        {
            Thread.SpinWait(1);
            if (clock.Elapsed > TestTimeouts.Long)
            {
                throw new TimeoutException($"the other thread never reached phase {phase}");
            }
        }
    }
}

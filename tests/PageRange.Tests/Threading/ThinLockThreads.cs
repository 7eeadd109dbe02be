using System.Runtime.CompilerServices;
using PageRange.Tests.Infrastructure;
using PageRange.Threading;

namespace PageRange.Tests.Threading;

/// <summary>Threads the <see cref="ThinLock"/> tests race against the test's own.</summary>
internal static class ThinLockThreads
{
    /// <summary>Starts a thread that takes the lock, marks that it did, and leaves it.</summary>
    internal static (Thread Thread, StrongBox<int> Entered) StartEnterer(ThinLock gate, string name)
    {
        var entered = new StrongBox<int>();
        var thread = new Thread(() =>
        {
            gate.Enter();
            Volatile.Write(ref entered.Value, 1);
            gate.Exit();
        })
        { IsBackground = true, Name = name };
        thread.Start();
        return (thread, entered);
    }

    /// <summary>Tries the lock on a new thread (and leaves it at once if taken).</summary>
    internal static bool TryEnterOnAnotherThread(ThinLock gate)
    {
        bool taken = false;
        var other = new Thread(() =>
        {
            taken = gate.TryEnter();
            if (taken)
            {
                gate.Exit();
            }
        })
        { IsBackground = true, Name = "try" };
        other.Start();
        Assert.True(other.Join(TestTimeouts.Long));
        return taken;
    }

    /// <summary>A lock biased to the calling thread.</summary>
    internal static ThinLock BiasedToCurrentThread()
    {
        var gate = new ThinLock();
        for (int i = 0; i < ThinLock.BiasAfter; i++)
        {
            gate.Enter();
            gate.Exit();
        }
        Assert.True(gate.IsBiasedToCurrentThread);
        return gate;
    }
}

/// <summary>
/// What a race test runs inside the lock: a non-atomic read-pause-write of a shared counter (two threads inside at once
/// lose an increment) and a count of threads inside (an overlap is seen directly); the test counts what it expects.
/// </summary>
internal sealed class ExclusionProbe(int pause)
{
    private long _counter;
    private long _expected;
    private int _inside;
    private int _overlaps;

    /// <summary>One section: call it with the lock held.</summary>
    public void Section()
    {
        if (Interlocked.Increment(ref _inside) != 1)
        {
            Interlocked.Increment(ref _overlaps);
        }
        long seen = Volatile.Read(ref _counter);
        Thread.SpinWait(pause);
        Volatile.Write(ref _counter, seen + 1);
        Interlocked.Decrement(ref _inside);
    }

    /// <summary>Counts <paramref name="sections"/> sections the test ran.</summary>
    public void Expect(long sections) => Interlocked.Add(ref _expected, sections);

    /// <summary>No two threads were ever inside, and no section was lost.</summary>
    public void AssertExclusive()
    {
        Assert.Equal(0, Volatile.Read(ref _overlaps));
        Assert.Equal(Volatile.Read(ref _expected), Volatile.Read(ref _counter));
    }
}

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

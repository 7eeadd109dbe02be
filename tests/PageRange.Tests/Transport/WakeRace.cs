using System.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The race a doorbell must not lose a wake in: a writer publishing one message per round after a random short pause,
/// while the reader takes it, waiting (as <paramref name="wait"/> says) whenever it finds nothing. Each round has one
/// message in flight, so each is at most one wake; a lost one costs its round the reader's whole park timeout.
/// </summary>
internal static class WakeRace
{
    /// <summary>Runs the race and returns the longest a message waited to be taken.</summary>
    /// <param name="pair">The channel pair, its writer and reader.</param>
    /// <param name="rounds">Messages, one per round.</param>
    /// <param name="maxPauseMicroseconds">The writer's pause before each publish is 0 to this, at random.</param>
    /// <param name="seed">The pauses' seed.</param>
    /// <param name="wait">How the reader waits in a round (its index) when it finds nothing.</param>
    internal static async Task<TimeSpan> RunAsync(ChannelPair pair, int rounds, int maxPauseMicroseconds, int seed, Action<int> wait)
    {
        long taken = 0;
        Task reader = Task.Run(() =>
        {
            for (int i = 0; i < rounds; i++)
            {
                // The wait may end with nothing to take (an open pack with no new entry wakes it too): look, then wait.
                TransactionRecord record;
                var waited = Stopwatch.StartNew();
                while (!pair.Inbound.TryReceive(out record))
                {
                    Assert.True(waited.Elapsed < TimeSpan.FromSeconds(60), $"round {i}: no message within 60 s");
                    wait(i);
                }
                Assert.Equal((uint)i, record.Code);
                pair.Inbound.Free(record);
                Volatile.Write(ref taken, i + 1);
            }
        });
        var random = new Random(seed);
        var worst = TimeSpan.Zero;
        for (int i = 0; i < rounds && !reader.IsCompleted; i++)
        {
            // The publish lands before the reader waits, while it spins, while it parks, or after.
            long pauseEnd = Stopwatch.GetTimestamp() + (random.Next(0, maxPauseMicroseconds) * Stopwatch.Frequency / 1_000_000);
            while (Stopwatch.GetTimestamp() < pauseEnd)
            {
                Thread.SpinWait(1);
            }
            var sent = Stopwatch.StartNew();
            pair.Outbound.Send(TransactionIds.AssignedOnSend, (uint)i, TransactionFlags.Oneway, [(byte)i], TestTimeouts.Long, CancellationToken.None);
            while (Volatile.Read(ref taken) <= i && !reader.IsCompleted && sent.Elapsed < TimeSpan.FromSeconds(40))
            {
                Thread.SpinWait(8);
            }
            worst = sent.Elapsed > worst ? sent.Elapsed : worst;
        }
        await reader.WaitAsync(TimeSpan.FromSeconds(180));
        return worst;
    }
}

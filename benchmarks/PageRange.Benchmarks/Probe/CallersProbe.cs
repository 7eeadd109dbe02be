using System.CommandLine;
using System.Diagnostics;
using PageRange.Benchmarks.CrossProcess;
using PageRange.Transport;

namespace PageRange.Benchmarks.Probe;

/// <summary>
/// <c>callers-probe</c>: several threads making synchronous calls on one connection at once, one server thread answering
/// them, in one process: calls/s and CPU per call. The threads take turns at the connection's reader role: all but one
/// wait behind it as followers (spinning, then parked, by the wait strategy), which is the path a change to the role's
/// protocol must not slow down. Not a timed test.
/// </summary>
internal static class CallersProbe
{
    internal const string CommandName = "callers-probe";

    private static readonly Option<int> s_callers = OptionRules.Positive(new Option<int>("--callers")
    {
        Description = "Threads calling on the one connection.",
        DefaultValueFactory = _ => 4,
        HelpName = "n",
    });

    private static readonly Option<int> s_rounds = ProbeSetup.RoundsOption();

    private static readonly Option<int> s_roundMs = OptionRules.Positive(new Option<int>("--round-ms")
    {
        Description = "Milliseconds per round.",
        DefaultValueFactory = _ => 2000,
        HelpName = "ms",
    });

    private static readonly Option<string> s_wait = new Option<string>("--wait")
    {
        Description = "How both ends wait.",
        DefaultValueFactory = _ => "spin-then-park",
        HelpName = "park|spin-then-park",
    }.AcceptOnlyFromAmong("park", "spin-then-park");

    public static Command CreateCommand()
    {
        var command = new Command(CommandName,
            "Several threads calling on one connection (one server thread answering, in one process): calls/s and CPU " +
            "per call, for the reader role's followers. Not a timed test.")
        {
            s_callers, s_rounds, s_roundMs, s_wait,
        };
        command.SetAction((parse, _) => RunAsync(
            parse.GetValue(s_callers), parse.GetValue(s_rounds), parse.GetValue(s_roundMs),
            parse.GetValue(s_wait) == "park" ? WaitStrategy.Park : WaitStrategy.SpinThenPark));
        return command;
    }

    private static async Task<int> RunAsync(int callers, int rounds, int roundMs, WaitStrategy wait)
    {
        await using ProbeSetup setup = await ProbeSetup.ConnectAsync(CommandName, wait).ConfigureAwait(false);
        PageRangeConnection client = setup.Client;
        PageRangeConnection server = setup.Server;
        Console.WriteLine($"callers-probe: {callers} calling threads, 64 B calls, {wait}, pid {Environment.ProcessId}, {Environment.ProcessorCount} cores");
        using var stop = new CancellationTokenSource();
        using var callersStop = new CancellationTokenSource();
        var answering = new Thread(() => Answer(server, stop.Token)) { IsBackground = true, Name = "answering" };
        answering.Start();
        long[] counts = new long[callers * 16];
        var threads = new Thread[callers];
        for (int i = 0; i < callers; i++)
        {
            int slot = i * 16;
            threads[i] = new Thread(() => Call(client, counts, slot, callersStop.Token)) { IsBackground = true, Name = $"caller {slot / 16}" };
            threads[i].Start();
        }
        try
        {
            for (int round = 1; round <= rounds; round++)
            {
                long before = Total(counts);
                TimeSpan cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
                long started = Stopwatch.GetTimestamp();
                Thread.Sleep(roundMs);
                long calls = Total(counts) - before;
                double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
                double cpuNs = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalMilliseconds * 1e6;
                Console.WriteLine($"round {round}: {calls / seconds:N0} calls/s, {cpuNs / Math.Max(calls, 1):F0} ns CPU per call");
            }
            // Each thread's own count: a thread starved behind the reader role shows here (the totals above hide it).
            Console.WriteLine($"calls per thread: {string.Join(", ", Enumerable.Range(0, callers).Select(i => Volatile.Read(ref counts[i * 16]).ToString(System.Globalization.CultureInfo.InvariantCulture)))}");
        }
        finally
        {
            // The callers first, while the answering thread still answers (calls wait for their replies without a
            // timeout, as binder's); then the answering thread, parked in Receive or not.
            await callersStop.CancelAsync().ConfigureAwait(false);
            foreach (Thread thread in threads)
            {
                thread.Join();
            }
            await stop.CancelAsync().ConfigureAwait(false);
            answering.Join();
        }
        return 0;
    }

    private static void Answer(PageRangeConnection server, CancellationToken stop)
    {
        try
        {
            while (true)
            {
                using Transaction call = server.Receive(stop);
                call.Reply(call.Payload);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // The probe is over. Anything else ends the process (an unhandled exception on this thread): the callers,
            // whose calls have no timeout, would otherwise wait for ever.
        }
    }

    private static void Call(PageRangeConnection client, long[] counts, int slot, CancellationToken stop)
    {
        byte[] payload = new byte[64];
        while (!stop.IsCancellationRequested)
        {
            // Not cancelled mid-call: the loop stops between calls.
            using Transaction reply = client.Call(BenchCodes.Ping, payload, timeout: null, CancellationToken.None);
            // Each thread its own cache line of the array: a shared counter would be a cache line the callers fight over.
            counts[slot]++;
        }
    }

    private static long Total(long[] counts)
    {
        long total = 0;
        for (int i = 0; i < counts.Length; i += 16)
        {
            total += Volatile.Read(ref counts[i]);
        }
        return total;
    }
}

using System.Diagnostics;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// Scenarios of the control plane's hostile and edge tests.
/// <list type="bullet">
/// <item><c>hostile-pidns-connect &lt;name&gt;</c>: re-runs itself under <c>unshare --pid --fork</c>, so that it lives in a
/// pid namespace of its own, and connects from there: <c>SO_PEERCRED</c> shows it the listener's pid as 0. With a 10 ms
/// park timeout (the death backstop runs every 10 ms) it prints <c>peer-pid: &lt;pid&gt;</c>, waits a second, prints
/// <c>alive: True|False</c>, and exits on stdin <c>quit</c> (or its end), so that the test can look at its own side of
/// the connection while this one is still open.</item>
/// <item><c>hostile-private-listen &lt;name&gt;</c>: listens on the private name (<see cref="PageRangeNamespace.Private"/>),
/// prints <c>listening: ok</c>, accepts and serves nothing, and exits on stdin <c>quit</c> (or is killed, leaving its
/// socket file behind as a crash does).</item>
/// </list>
/// </summary>
internal static class HostileControlScenarios
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(60);

    public static int PidNamespaceConnect(string[] args)
    {
        string name = args[1];
        if (args.Length > 2 && args[2] == "--inner")
        {
            return PidNamespaceConnectInnerAsync(name).GetAwaiter().GetResult();
        }

        var startInfo = new ProcessStartInfo("unshare") { RedirectStandardOutput = true, UseShellExecute = false };
        if (Interop.GetEffectiveUserId() != 0)
        {
            // Only root may make a pid namespace alone; anyone may within a user namespace of their own, where they are
            // root over their own uid only (which the listener still sees as theirs).
            startInfo.ArgumentList.Add("--user");
            startInfo.ArgumentList.Add("--map-root-user");
        }
        foreach (string argument in new[] { "--pid", "--fork", Environment.ProcessPath!, typeof(HostileControlScenarios).Assembly.Location, args[0], name, "--inner" })
        {
            startInfo.ArgumentList.Add(argument);
        }
        using Process inner = Process.Start(startInfo) ?? throw new InvalidOperationException("unshare did not start.");
        try
        {
            while (inner.StandardOutput.ReadLine() is { } line)
            {
                Console.WriteLine(line);
            }
            if (!inner.WaitForExit(s_bound))
            {
                throw new TimeoutException("The scenario in its own pid namespace did not end.");
            }
            return inner.ExitCode;
        }
        finally
        {
            if (!inner.HasExited)
            {
                inner.Kill(entireProcessTree: true);
            }
        }
    }

    public static int PrivateListen(string[] args) => PrivateListenAsync(args[1]).GetAwaiter().GetResult();

    private static async Task<int> PrivateListenAsync(string name)
    {
        var options = new PageRangeOptions { Namespace = PageRangeNamespace.Private };
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        Console.WriteLine("listening: ok");
        while (await Console.In.ReadLineAsync() is { } line && line != "quit")
        {
        }
        return 0;
    }

    private static async Task<int> PidNamespaceConnectInnerAsync(string name)
    {
        var options = new PageRangeOptions
        {
            RegionSize = PageRangeOptions.MinRegionSize,
            TransactionRingCapacity = 64,
            FreeRingCapacity = 64,
            WaitStrategy = WaitStrategy.Park,
            ParkTimeout = TimeSpan.FromMilliseconds(10),
        };
        using var timeout = new CancellationTokenSource(s_bound);
        await using PageRangeConnection connection = await PageRangeConnection.ConnectAsync(name, options, timeout.Token);
        Console.WriteLine($"own-pid: {Environment.ProcessId}");
        Console.WriteLine($"peer-pid: {connection.PeerPid}");
        // A hundred rounds of the death backstop.
        await Task.Delay(TimeSpan.FromSeconds(1));
        Console.WriteLine($"alive: {connection.IsPeerAlive}");
        // Stdin is inherited through unshare: stay connected until the test has checked its side.
        while (await Console.In.ReadLineAsync() is { } line && line != "quit")
        {
        }
        return 0;
    }
}

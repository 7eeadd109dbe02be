namespace PageRange.TestHost;

/// <summary>
/// The second process of the cross-process tests. The first argument names a scenario; each scenario writes
/// <c>key: value</c> lines on stdout for the test to read, and exits 0 when it went as planned.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine("usage: PageRange.TestHost <scenario> [arguments]");
            return 2;
        }
        try
        {
            return args[0] switch
            {
                "echo-args" => EchoArgs(args),
                "idle" => Idle(),
                "map-region" => MemoryScenarios.MapRegion(args),
                "control-listen" => ControlScenarios.Listen(args),
                "control-connect" => ControlScenarios.Connect(args),
                "pipe-sink" => SerializationScenarios.PipeSink(args),
                "transport-connect" => TransportScenarios.Connect(args),
                "fault-send-stream" => FaultScenarios.SendStream(args),
                "fault-hold" => FaultScenarios.Hold(args),
                "fault-slow-reader" => FaultScenarios.SlowReader(args),
                "fault-fuzz" => FaultScenarios.Fuzz(args),
                "server-client" => ServerScenarios.Client(args),
                "server-garbage" => ServerScenarios.Garbage(args),
                "server-silent" => ServerScenarios.Silent(args),
                "server-fd-flood" => ServerScenarios.DescriptorFlood(args),
                "nested-serve" => NestedScenarios.Serve(args),
                "hostile-pidns-connect" => HostileControlScenarios.PidNamespaceConnect(args),
                "hosting-serve" => HostingScenarios.Serve(args),
                "hostile-private-listen" => HostileControlScenarios.PrivateListen(args),
                "tracing-serve" => TracingScenarios.Serve(args),
                "adversary-honest" => AdversaryScenarios.Honest(args),
                "adversary-attack" => AdversaryScenarios.Attack(args),
                "server-stop-reading" => ReplyRoomScenarios.StopReading(args),
                "grpc-serve" => GrpcScenarios.Serve(args),
                "tool-serve" => ToolScenarios.Serve(args),
                _ => Unknown(args[0]),
            };
        }
        catch (Exception error)
        {
            Console.Error.WriteLine(error);
            Console.WriteLine($"error: {error.GetType().Name}: {error.Message}");
            return 1;
        }
    }

    private static int EchoArgs(string[] args)
    {
        Console.WriteLine($"args: {string.Join(' ', args[1..])}");
        return 0;
    }

    /// <summary>Says it runs, then waits for stdin to close (or to be killed).</summary>
    private static int Idle()
    {
        Console.WriteLine($"idle: {Environment.ProcessId}");
        while (Console.In.ReadLine() is not null)
        {
        }
        return 0;
    }

    private static int Unknown(string scenario)
    {
        Console.Error.WriteLine($"unknown scenario '{scenario}'");
        return 2;
    }
}

using System.CommandLine;
using BenchmarkDotNet.Running;
using PageRange.Benchmarks.CrossProcess;
using PageRange.Benchmarks.Soak;

namespace PageRange.Benchmarks;

/// <summary>
/// <c>cross-process</c> runs the two-process harness, <c>memory</c> the memory-over-time workload, <c>soak</c> the
/// reliability soak (random sizes, mixes and peer kills; not in CI), <c>server</c> the server workload (many client
/// processes against one server, beside a Unix-socket server), <c>grpc</c> gRPC over PageRange beside gRPC over a Unix
/// socket, <c>stream-probe</c> a oneway stream's send and receive work per message on one thread, <c>micro</c> (or any argument that is not a
/// command, such as <c>--filter</c>) goes to BenchmarkDotNet's own command line; <c>--peer</c> is the second process
/// the harness starts. Each command has <c>--help</c>; a bad argument is one line on stderr and exit code 2.
/// </summary>
internal static class Program
{
    private const string MemoryCommandName = "memory";
    private const string MicroCommandName = "micro";

    private static async Task<int> Main(string[] args)
    {
        switch (args)
        {
            // The processes the harness and the soak start themselves: their arguments are a private protocol.
            case ["--peer", ..]:
                return CrossProcessPeer.Run(args[1..]);
            case ["--server-client", ..]:
                return Server.ServerBenchmarkClient.Run(args[1..]);
            case ["--grpc-server", ..]:
                return Grpc.GrpcBenchmarkServer.Run(args[1..]);
            case [Grpc.GrpcProfile.CommandName, ..]:
                return Grpc.GrpcProfile.Run(args[1..]);
            case [SoakCommand.CommandName, "--peer", string name, string seed]:
                return SoakCommand.RunPeer(name, seed);
            // BenchmarkDotNet parses its own command line (--filter, --job, --list, its own --help).
            case [MicroCommandName, ..]:
                BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args[1..]);
                return 0;
            case [CrossProcessOptions.CommandName or MemoryCommandName or SoakCommand.CommandName or Server.ServerBenchmark.CommandName or Grpc.GrpcBenchmark.CommandName or Probe.StreamProbe.CommandName or Probe.CallProbe.CommandName or Probe.CallersProbe.CommandName or "--help" or "-h" or "-?" or "--version", ..]:
                return await InvokeAsync(args);
            default:
                BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
                return 0;
        }
    }

    private static async Task<int> InvokeAsync(string[] args)
    {
        var root = new RootCommand("PageRange's benchmarks: the two-process harness, memory over time, the soak, the server workload, gRPC over PageRange, a stream's work per message, a call's work per round trip, and BenchmarkDotNet's micro benchmarks.")
        {
            CrossProcessOptions.CreateCommand(options => CrossProcessCommand.RunAsync(options, args[1..])),
            MemoryCommand(),
            SoakCommand.CreateCommand(),
            Server.ServerBenchmark.CreateCommand(args[1..]),
            Grpc.GrpcBenchmark.CreateCommand(args[1..]),
            Probe.StreamProbe.CreateCommand(),
            Probe.CallProbe.CreateCommand(),
            Probe.CallersProbe.CreateCommand(),
            MicroCommand(),
        };
        ParseResult parse = root.Parse(args);
        string command = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "the command's";
        int usage = OptionRules.ReportErrors(parse, command);
        return usage != 0 ? usage : await parse.InvokeAsync();
    }

    private static Command MemoryCommand()
    {
        var quick = new Option<bool>("--quick") { Description = "A short run for CI (400 ms phases instead of 1200 ms)." };
        var output = new Option<string>("--out") { Description = "Where memory.md, memory.csv and the chart go (default: benchmarks/results).", HelpName = "dir" };
        var command = new Command(MemoryCommandName,
            "Memory over time: bursts that fill the peer's oneway quota, idles, an explicit Shrinker.Shared.Scan, the pressure monitor and its idle age; pages Used/Available/Free and resident bytes sampled throughout.")
        {
            quick, output,
        };
        command.SetAction((parse, _) =>
        {
            // MemoryOverTime reads its two options itself; hand them on in its spelling.
            List<string> forwarded = [];
            if (parse.GetValue(quick))
            {
                forwarded.Add("--quick");
            }
            if (parse.GetValue(output) is { } directory)
            {
                forwarded.AddRange(["--out", directory]);
            }
            return MemoryOverTime.RunAsync([.. forwarded]);
        });
        return command;
    }

    /// <summary>Only for the help text: <see cref="Main"/> hands <c>micro ...</c> to BenchmarkDotNet before parsing.</summary>
    private static Command MicroCommand() =>
        new(MicroCommandName, "BenchmarkDotNet's micro benchmarks; every argument after 'micro' goes to BenchmarkDotNet (--filter '*HotPath*', --job short, --list flat, --help).")
        {
            new Argument<string[]>("arguments") { Description = "BenchmarkDotNet's arguments.", Arity = ArgumentArity.ZeroOrMore },
        };
}

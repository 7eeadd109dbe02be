using BenchmarkDotNet.Running;
using PageRange.Benchmarks.CrossProcess;

namespace PageRange.Benchmarks;

/// <summary>
/// <c>cross-process</c> runs the two-process harness, <c>memory</c> the memory-over-time workload, <c>soak</c> the
/// reliability soak (random sizes, mixes and peer kills; not in CI), <c>server</c> the server workload (many
/// client processes against one server, beside a Unix-socket server), <c>--peer</c> and <c>--server-client</c> are the
/// second process they start; anything else goes to BenchmarkDotNet, so <c>--filter</c>, <c>--job</c> and the rest work.
/// </summary>
internal static class Program
{
    private static async Task<int> Main(string[] args)
    {
        switch (args.FirstOrDefault())
        {
            case "cross-process":
                return await CrossProcessCommand.RunAsync(args[1..]);
            case "memory":
                return await MemoryOverTime.RunAsync(args[1..]);
            case "soak":
                return await Soak.SoakCommand.RunAsync(args[1..]);
            case "--peer":
                return CrossProcessPeer.Run(args[1..]);
            case "server":
                return await Server.ServerBenchmark.RunAsync(args[1..]);
            case "--server-client":
                return Server.ServerBenchmarkClient.Run(args[1..]);
            default:
                BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
                return 0;
        }
    }
}

using System.CommandLine;
using Grpc.Core;
using PageRange;

namespace GrpcGreeter;

/// <summary>
/// The greeter over every transport: <c>GrpcGreeter --transport pagerange|uds|tcp|all</c> starts the server as a child
/// process (this program again, <c>serve</c>), calls it with the same generated <c>Greeter.GreeterClient</c> over each
/// transport chosen, prints p50/p99 of the unary calls and the ratios to PageRange, and kills the child on exit.
/// <c>GrpcGreeter serve</c> is the server alone.
/// </summary>
internal static class Program
{
    private static Task<int> Main(string[] args)
    {
        var transport = new Option<string>("--transport")
        {
            Description = "Which transport(s) the client calls the greeter over.",
            DefaultValueFactory = _ => "all",
            HelpName = "pagerange|uds|tcp|all",
        }.AcceptOnlyFromAmong("pagerange", "uds", "tcp", "all");
        var calls = new Option<int>("--calls") { Description = "Unary calls measured per transport (after 200 of warm-up).", DefaultValueFactory = _ => 2000, HelpName = "n" };
        calls.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int>() <= 0)
            {
                result.AddError("--calls takes a whole number above zero.");
            }
        });
        var name = new Option<string>("--name") { Description = "The server's PageRange name.", DefaultValueFactory = _ => $"greeter-{Environment.ProcessId}" };
        var socket = new Option<string>("--socket") { Description = "The Unix socket Kestrel listens on.", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), $"greeter-{Environment.ProcessId}.sock") };
        var port = new Option<int>("--port") { Description = "The loopback TCP port Kestrel listens on (0: any free port).", DefaultValueFactory = _ => 0 };

        var serve = new Command("serve", "The server alone: the greeter over PageRange, a Unix socket and TCP until stdin closes.") { name, socket, port };
        serve.SetAction(parse => GreeterServer.RunAsync(parse.GetValue(name)!, parse.GetValue(socket)!, parse.GetValue(port)));
        var root = new RootCommand("gRPC greeter: one service over PageRange, over HTTP/2 on a Unix socket and over HTTP/2 on TCP; the client's latency over each.")
        {
            transport, calls, serve,
        };
        root.SetAction(async parse =>
        {
            try
            {
                return await GreeterClient.RunAsync(parse.GetValue(transport)!, parse.GetValue(calls));
            }
            catch (Exception error) when (error is InvalidOperationException or RpcException or IOException or PageRangeException)
            {
                Console.Error.WriteLine($"error: {error.Message}");
                return 1;
            }
        });
        return root.Parse(args).InvokeAsync();
    }
}

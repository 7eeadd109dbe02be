using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using PageRange;
using PageRange.Grpc;

namespace GrpcGreeter;

/// <summary>
/// The client: starts <c>GrpcGreeter serve</c> as a child, then for each transport makes a channel, warms it up and
/// times <c>SayHello</c> calls with the same generated client; prints p50 and p99 and each one's ratio to PageRange.
/// </summary>
internal static class GreeterClient
{
    public static async Task<int> RunAsync(string transport, int calls)
    {
        string name = $"greeter-{Environment.ProcessId}";
        string directory = Directory.CreateTempSubdirectory("greeter-").FullName;
        string socketPath = Path.Combine(directory, "greeter.sock");
        using Process server = StartServer(name, socketPath);
        try
        {
            int tcpPort = int.Parse(Expect(server, "tcp-port: "), CultureInfo.InvariantCulture);
            Expect(server, "ready");
            string[] transports = transport == "all" ? ["pagerange", "uds", "tcp"] : [transport];
            var p50s = new Dictionary<string, double>();
            foreach (string each in transports)
            {
                (CallInvoker invoker, IDisposable owner) = Connect(each, name, socketPath, tcpPort);
                using (owner)
                {
                    var client = new Greeter.GreeterClient(invoker);
                    HelloReply first = await client.SayHelloAsync(new HelloRequest { Name = each });
                    Console.WriteLine($"{each}: {first.Message}");
                    (double p50, double p99) = await MeasureAsync(client, calls);
                    p50s[each] = p50;
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{each}: p50 {p50:F1} µs, p99 {p99:F1} µs ({calls} calls)"));
                }
            }
            if (p50s.TryGetValue("pagerange", out double pagerange))
            {
                foreach ((string each, double p50) in p50s.Where(pair => pair.Key != "pagerange"))
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{each} / pagerange p50: x{p50 / pagerange:F2}"));
                }
            }
            return 0;
        }
        finally
        {
            if (!server.HasExited)
            {
                server.Kill(entireProcessTree: true);
            }
            server.WaitForExit(10_000);
            Directory.Delete(directory, recursive: true);
        }
    }

    private static (CallInvoker Invoker, IDisposable Owner) Connect(string transport, string name, string socketPath, int tcpPort)
    {
        switch (transport)
        {
            case "pagerange":
                PageRangeCallInvoker invoker = PageRangeGrpcChannel.Create(name, new PageRangeGrpcChannelOptions
                {
                    ConnectionOptions = new PageRangeOptions { WaitStrategy = WaitStrategy.SpinThenPark },
                });
                return (invoker, invoker);
            case "uds":
                // .NET's IPC guidance: a SocketsHttpHandler whose ConnectCallback opens the Unix socket.
                GrpcChannel uds = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
                {
                    HttpHandler = new SocketsHttpHandler
                    {
                        ConnectCallback = async (_, cancellationToken) =>
                        {
                            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                            try
                            {
                                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
                                return new NetworkStream(socket, ownsSocket: true);
                            }
                            catch
                            {
                                socket.Dispose();
                                throw;
                            }
                        },
                    },
                });
                return (uds.CreateCallInvoker(), uds);
            default:
                GrpcChannel tcp = GrpcChannel.ForAddress($"http://127.0.0.1:{tcpPort}");
                return (tcp.CreateCallInvoker(), tcp);
        }
    }

    private static async Task<(double P50, double P99)> MeasureAsync(Greeter.GreeterClient client, int calls)
    {
        var request = new HelloRequest { Name = "world" };
        for (int i = 0; i < 200; i++)
        {
            await client.SayHelloAsync(request);
        }
        long[] ticks = new long[calls];
        for (int i = 0; i < calls; i++)
        {
            long started = Stopwatch.GetTimestamp();
            await client.SayHelloAsync(request);
            ticks[i] = Stopwatch.GetTimestamp() - started;
        }
        Array.Sort(ticks);
        double perMicro = Stopwatch.Frequency / 1e6;
        return (ticks[(calls - 1) / 2] / perMicro, ticks[(int)((calls - 1) * 0.99)] / perMicro);
    }

    private static Process StartServer(string name, string socketPath)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath ?? "dotnet") { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true };
        if (Path.GetFileNameWithoutExtension(start.FileName) == "dotnet")
        {
            start.ArgumentList.Add(typeof(GreeterClient).Assembly.Location);
        }
        foreach (string argument in new[] { "serve", "--name", name, "--socket", socketPath, "--port", "0" })
        {
            start.ArgumentList.Add(argument);
        }
        return Process.Start(start) ?? throw new InvalidOperationException("The greeter server could not be started.");
    }

    private static string Expect(Process process, string prefix)
    {
        while (process.StandardOutput.ReadLine() is { } line)
        {
            if (line.StartsWith(prefix, StringComparison.Ordinal))
            {
                return line[prefix.Length..];
            }
        }
        throw new InvalidOperationException($"The greeter server ended before '{prefix}' (exit code {(process.HasExited ? process.ExitCode : -1)}).");
    }
}

using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PageRange;
using PageRange.Grpc;
using PageRange.Server;

namespace GrpcGreeter;

/// <summary>
/// The server (<c>GrpcGreeter serve</c>): one <see cref="GreeterService"/> instance served over PageRange under a name,
/// and by Kestrel over HTTP/2 on a Unix socket and on TCP (loopback), all at once. Prints <c>tcp-port: N</c> and
/// <c>ready</c>, and stops when stdin closes (the client that started it exits or kills it).
/// </summary>
internal static class GreeterServer
{
    public static async Task<int> RunAsync(string name, string socketPath, int port)
    {
        var service = new GreeterService();
        await using PageRangeServer pagerange = PageRangeServer.Start(name, builder => builder.MapGrpcService(service));

        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // HTTP/2 without TLS (prior knowledge), as gRPC between processes of one host is usually configured.
            kestrel.ListenUnixSocket(socketPath, listen => listen.Protocols = HttpProtocols.Http2);
            kestrel.Listen(IPAddress.Loopback, port, listen => listen.Protocols = HttpProtocols.Http2);
        });
        builder.Services.AddSingleton(service);
        builder.Services.AddGrpc();
        await using WebApplication app = builder.Build();
        app.MapGrpcService<GreeterService>();
        await app.StartAsync();

        string tcp = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .First(address => address.StartsWith("http://127.0.0.1:", StringComparison.Ordinal));
        Console.WriteLine($"tcp-port: {new Uri(tcp).Port}");
        Console.WriteLine("ready");
        while (Console.ReadLine() is not null)
        {
        }
        await app.StopAsync();
        return 0;
    }
}

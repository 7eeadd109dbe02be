using System.Net.Sockets;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Grpc.Conformance;

/// <summary>
/// The reference: Grpc.AspNetCore on Kestrel listening on a Unix domain socket in a private temporary directory, and
/// a <see cref="GrpcChannel"/> whose <see cref="SocketsHttpHandler.ConnectCallback"/> connects to that socket, as
/// .NET's inter-process communication guidance configures gRPC.
/// </summary>
public sealed class KestrelConformanceFixture : ConformanceFixture
{
    private readonly string _directory = Directory.CreateTempSubdirectory("pagerange-grpc-kestrel-").FullName;
    private WebApplication? _app;
    private GrpcChannel? _channel;

    /// <summary>The socket Kestrel listens on.</summary>
    public string SocketPath => Path.Combine(_directory, "conformance.sock");

    public override async Task InitializeAsync()
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.ListenUnixSocket(SocketPath, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Services.AddSingleton(Service);
        builder.Services.AddSingleton(ServerInterceptor);
        builder.Services.AddGrpc(grpc => grpc.Interceptors.Add<RecordingServerInterceptor>());
        _app = builder.Build();
        _app.MapGrpcService<ConformanceService>();
        await _app.StartAsync().WaitAsync(TestTimeouts.Long);
        _channel = CreateChannel(SocketPath);
        Invoker = _channel.CreateCallInvoker();
    }

    /// <summary>A channel to the Kestrel server listening on <paramref name="socketPath"/>.</summary>
    public static GrpcChannel CreateChannel(string socketPath)
    {
        var handler = new SocketsHttpHandler
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
        };
        return GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
    }

    public override async Task DisposeAsync()
    {
        _channel?.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync().WaitAsync(TestTimeouts.Long);
            await _app.DisposeAsync();
        }
        Directory.Delete(_directory, recursive: true);
    }
}

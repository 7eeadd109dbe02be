using Grpc.Core;
using Grpc.Net.Client;

namespace PageRange.Tests.Grpc.Conformance;

/// <summary>The conformance assertions against the reference: Grpc.AspNetCore on Kestrel over a Unix domain socket.</summary>
public sealed class KestrelGrpcConformanceTests(KestrelConformanceFixture fixture, ITestOutputHelper output)
    : GrpcConformanceTests(fixture, output), IClassFixture<KestrelConformanceFixture>
{
    // Kestrel knows a TCP peer by its address; a Unix-socket client's end has neither address nor path, and Kestrel
    // does not ask the kernel who it is (SO_PEERCRED): the service cannot tell which process called.
    private protected override void AssertPeer(string peer) => Assert.Equal("unknown", peer);

    // The :authority of the channel's address.
    private protected override void AssertHost(string host) => Assert.Equal("localhost", host);

    private protected override IAsyncDisposable InvokerToNoServer(out CallInvoker invoker)
    {
        GrpcChannel channel = KestrelConformanceFixture.CreateChannel(Path.Combine(Path.GetTempPath(), $"no-server-{Guid.NewGuid():N}.sock"));
        invoker = channel.CreateCallInvoker();
        return new ChannelOwner(channel);
    }

    private sealed class ChannelOwner(GrpcChannel channel) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            channel.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

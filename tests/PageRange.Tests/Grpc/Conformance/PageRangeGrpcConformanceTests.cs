using System.Globalization;
using Grpc.Core;
using PageRange.Grpc;
using PageRange.Tests.Transport;

namespace PageRange.Tests.Grpc.Conformance;

/// <summary>
/// The conformance assertions against gRPC over PageRange. Where it differs from Kestrel on purpose (only here):
/// the peer is named by the caller's kernel credentials (<c>pagerange:pid=P,uid=U</c>, from the handshake's
/// SO_PEERCRED) where Kestrel reports a Unix-socket caller as <c>unknown</c>; and the host is the one the client passed
/// to the call (generated clients pass none: empty), as there is no HTTP <c>:authority</c> on PageRange.
/// </summary>
public sealed class PageRangeGrpcConformanceTests(PageRangeConformanceFixture fixture, ITestOutputHelper output)
    : GrpcConformanceTests(fixture, output), IClassFixture<PageRangeConformanceFixture>
{
    private protected override void AssertPeer(string peer) =>
        Assert.Equal($"pagerange:pid={Environment.ProcessId},uid={CurrentUid()}", peer);

    private protected override void AssertHost(string host) => Assert.Equal("", host);

    private protected override IAsyncDisposable InvokerToNoServer(out CallInvoker invoker)
    {
        PageRangeCallInvoker pagerange = PageRangeGrpcChannel.Create(ControlHandshakeTests.UniqueName());
        invoker = pagerange;
        return pagerange;
    }

    /// <summary>The real uid of this process, from the kernel's own account of it.</summary>
    internal static int CurrentUid()
    {
        string line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal));
        return int.Parse(line.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }
}

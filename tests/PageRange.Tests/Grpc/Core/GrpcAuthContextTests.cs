using Grpc.Core;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;

namespace PageRange.Tests.Grpc.Core;

/// <summary>
/// <c>ServerCallContext.AuthContext</c> names the caller by the pid and uid the kernel reported (SO_PEERCRED): the peer
/// is authenticated, its identity is the uid. <c>CreatePropagationToken</c> says why it is not supported.
/// </summary>
public sealed class GrpcAuthContextTests
{
    [Fact]
    public async Task AuthContext_CallerPidAndUid_AuthenticatedByUid()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        CoreMessage reply = await client.UnaryAsync(new CoreMessage { Text = "auth" }).ResponseAsync.WaitAsync(TestTimeouts.Long);

        string uid = Interop.GetEffectiveUserId().ToString(System.Globalization.CultureInfo.InvariantCulture);
        string pid = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(string.Join('|', true, "pagerange.uid", uid, pid, uid, 2), reply.Text);
    }

    [Fact]
    public async Task CreatePropagationToken_NotSupported_MessageSaysWhatToDoInstead()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        CoreMessage reply = await client.UnaryAsync(new CoreMessage { Text = "propagate" }).ResponseAsync.WaitAsync(TestTimeouts.Long);

        Assert.Contains("context.Deadline and context.CancellationToken", reply.Text, StringComparison.Ordinal);
    }
}

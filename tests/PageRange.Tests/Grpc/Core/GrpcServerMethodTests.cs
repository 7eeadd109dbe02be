using Grpc.Core;
using PageRange.Grpc;
using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Serialization;
using PageRange.Transport;

namespace PageRange.Tests.Grpc.Core;

/// <summary>
/// The status a handler's cancellation ends a call with: what fired the call's token, not the clock when the handler's
/// exception is read (a slow machine reads it late).
/// </summary>
public sealed class GrpcServerMethodTests
{
    private const uint Code = 7;

    [Fact]
    public async Task StatusOf_CallerCancelledBeforeTheDeadlineAndReadAfterIt_Cancelled()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        DateTimeOffset deadline = DateTimeOffset.UtcNow.AddSeconds(3);
        using var cancelTheCall = new CancellationTokenSource();
        Task<Transaction> calling = pair.Client.CallAsync(Code, new byte[8], new PageRangeCallOptions { Deadline = deadline }, cancellationToken: cancelTheCall.Token).AsTask();
        using var received = new CancellationTokenSource(TestTimeouts.Long);
        using Transaction transaction = pair.Server.Receive(received.Token);
        CallContext call = NewContext(pair, transaction, CancellationToken.None);
        CancellationToken token = call.CancellationToken;

        await cancelTheCall.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => calling.WaitAsync(TestTimeouts.Long));
        await Poll.WaitUntilAsync(() => token.IsCancellationRequested, "the caller's cancel reached the handler's token");
        Assert.True(DateTimeOffset.UtcNow < deadline, "the cancel arrived after the deadline: the test proves nothing");
        // A handler (or a machine) slow to let its exception through: it is read after the deadline.
        await Task.Delay(deadline - DateTimeOffset.UtcNow + TimeSpan.FromMilliseconds(100));

        Status status = StatusOf(call, token);
        Assert.True(status.StatusCode == StatusCode.Cancelled, $"{status.StatusCode}: {status.Detail}");
        Assert.False(call.DeadlineTimerFired);
        call.End();
    }

    [Fact]
    public async Task StatusOf_DeadlineFiredThenTheServerStopped_DeadlineExceeded()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        // A oneway: no cancel of the caller's can come first; the server's stop comes after the deadline's timer.
        pair.Client.SendOneway(Code, new byte[8], new PageRangeCallOptions { Deadline = DateTimeOffset.UtcNow.AddMilliseconds(200) });
        using var received = new CancellationTokenSource(TestTimeouts.Long);
        using Transaction transaction = pair.Server.Receive(received.Token);
        using var stopping = new CancellationTokenSource();
        CallContext call = NewContext(pair, transaction, stopping.Token);
        CancellationToken token = call.CancellationToken;

        await Poll.WaitUntilAsync(() => token.IsCancellationRequested, "the deadline's timer fired");
        await stopping.CancelAsync();

        Assert.True(call.DeadlineTimerFired);
        Status status = StatusOf(call, token);
        Assert.True(status.StatusCode == StatusCode.DeadlineExceeded, $"{status.StatusCode}: {status.Detail}");
        call.End();
    }

    private static CallContext NewContext(ConnectedPair pair, Transaction transaction, CancellationToken serverStopping) =>
        new(new ClientInfo(1, pair.Server.PeerPid, pair.Server.PeerUid, pair.Server.PeerGid, DateTimeOffset.UtcNow), pair.Server, transaction, serverStopping);

    /// <summary>What the server replies when the handler lets the token's exception through.</summary>
    private static Status StatusOf(CallContext call, CancellationToken token)
    {
        var context = new PageRangeServerCallContext("/test/Method", null, call, [], null, token);
        return GrpcServerMethod<byte[], byte[]>.StatusOf(new OperationCanceledException(token), context, call);
    }
}

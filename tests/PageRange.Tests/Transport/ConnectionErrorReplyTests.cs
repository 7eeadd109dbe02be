using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>Error replies carry a status and a bounded, control-free message to the caller (record v2).</summary>
public sealed class ConnectionErrorReplyTests
{
    /// <summary>Receives one call on a thread of its own and hands it to <paramref name="handle"/>, which disposes it.</summary>
    private static Thread Serve(PageRangeConnection connection, Action<Transaction> handle)
    {
        var thread = new Thread(() =>
        {
            Transaction call = connection.Receive();
            try
            {
                handle(call);
            }
            finally
            {
                call.Dispose();
            }
        })
        { IsBackground = true, Name = "handler" };
        thread.Start();
        return thread;
    }

    [Theory]
    [InlineData(CallStatus.NotFound)]
    [InlineData(CallStatus.Internal)]
    [InlineData(CallStatus.Unauthenticated)]
    public async Task ReplyError_StatusAndMessage_CallerGetsRemoteCallExceptionWithBoth(CallStatus status)
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        Thread handler = Serve(pair.Server, call => call.ReplyError(status, "no such thing: ünïcode"));

        var error = Assert.Throws<RemoteCallException>(() => pair.Client.Call(1, new byte[8], TestTimeouts.Long));

        Assert.Equal(status, error.Status);
        Assert.Equal("no such thing: ünïcode", error.Message);
        Assert.True(handler.Join(TestTimeouts.Long));
        Assert.True(pair.Client.IsPeerAlive);
    }

    [Fact]
    public async Task ReplyError_CallAsync_ThrowsRemoteCallExceptionWithStatus()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        Thread handler = Serve(pair.Server, call => call.ReplyError(CallStatus.PermissionDenied, "not you"));

        var error = await Assert.ThrowsAsync<RemoteCallException>(
            () => pair.Client.CallAsync(1, new byte[8], TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long));

        Assert.Equal(CallStatus.PermissionDenied, error.Status);
        Assert.Equal("not you", error.Message);
        Assert.True(handler.Join(TestTimeouts.Long));
    }

    [Fact]
    public async Task ReplyError_LongMessageWithControlCharacters_ArrivesBoundedAndClean()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        string hostile = "line1\nline2\u001b[31m\u202Eevil" + new string('x', 5000);
        Thread handler = Serve(pair.Server, call => call.ReplyError(CallStatus.InvalidArgument, hostile));

        var error = Assert.Throws<RemoteCallException>(() => pair.Client.Call(1, [], TestTimeouts.Long));

        Assert.Equal(CallStatus.InvalidArgument, error.Status);
        Assert.True(error.Message.Length <= PeerText.MaxLength + 1, $"{error.Message.Length} characters");
        Assert.StartsWith("line1 line2 [31m evil", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(error.Message, char.IsControl);
        Assert.True(handler.Join(TestTimeouts.Long));
    }

    [Fact]
    public async Task Dispose_WithoutReplying_CallerGetsUnknownStatus()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        Thread handler = Serve(pair.Server, _ => { });

        var error = Assert.Throws<RemoteCallException>(() => pair.Client.Call(1, [1], TestTimeouts.Long));

        Assert.Equal(CallStatus.Unknown, error.Status);
        Assert.Equal("The peer disposed the call without replying.", error.Message);
        Assert.True(handler.Join(TestTimeouts.Long));
    }

    [Fact]
    public async Task ReplyError_OkOrUndefinedStatus_ThrowsAndTheCallCanStillBeAnswered()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        Exception? ok = null, undefined = null, nullMessage = null;
        Thread handler = Serve(pair.Server, call =>
        {
            ok = Record.Exception(() => call.ReplyError(CallStatus.Ok, "fine"));
            undefined = Record.Exception(() => call.ReplyError((CallStatus)17, "what"));
            nullMessage = Record.Exception(() => call.ReplyError(CallStatus.Internal, null!));
            call.Reply([42]);
        });

        using (Transaction reply = pair.Client.Call(1, [1], TestTimeouts.Long))
        {
            Assert.Equal([42], reply.Payload.ToArray());
        }
        Assert.True(handler.Join(TestTimeouts.Long));
        Assert.IsType<ArgumentOutOfRangeException>(ok);
        Assert.IsType<ArgumentOutOfRangeException>(undefined);
        Assert.IsType<ArgumentNullException>(nullMessage);
    }

    [Fact]
    public async Task ReplyError_AfterReply_ThrowsInvalidOperation()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        Exception? second = null;
        Thread handler = Serve(pair.Server, call =>
        {
            call.Reply([1]);
            second = Record.Exception(() => call.ReplyError(CallStatus.Internal, "too late"));
        });

        pair.Client.Call(1, [1], TestTimeouts.Long).Dispose();
        Assert.True(handler.Join(TestTimeouts.Long));
        Assert.IsType<InvalidOperationException>(second);
    }

    [Fact]
    public async Task Call_FailedReplyOverTheControlSocket_StatusIsResourceExhausted()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.RegionFullTimeout = TimeSpan.FromMilliseconds(50);
        // The error reply must need a buffer: carried inline in the ring or written directly it needs no page.
        options.InlineSmallPayloads = false;
        options.DirectReplies = false;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        pair.Server.Outbound.Region.AllocationFaultInjector = _ => true;
        Thread handler = Serve(pair.Server, _ => { });

        var error = Assert.Throws<RemoteCallException>(() => pair.Client.Call(1, new byte[16], TestTimeouts.Long));

        Assert.Equal(CallStatus.ResourceExhausted, error.Status);
        Assert.True(handler.Join(TestTimeouts.Long));
    }
}

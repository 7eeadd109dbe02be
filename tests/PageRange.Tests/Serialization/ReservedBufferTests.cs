using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Serialization;

/// <summary>
/// Zero-copy sends over a real connection: bytes written into a reservation arrive exactly, across page boundaries;
/// a commit can never publish more than was reserved; an uncommitted reservation gives its space back.
/// </summary>
public sealed class ReservedBufferTests
{
    private static readonly int s_page = SharedRegion.PageSize;

    public static TheoryData<int, int> BoundaryCases() => new()
    {
        // (bytes reserved before, to shift the buffer's start; payload size)
        { 0, s_page },
        { 0, s_page + 1 },
        { 8, s_page - 8 },
        { 8, s_page },
        { 100, 3 * s_page + 100 },
        { s_page - 8, 16 },
        { s_page - 8, 5 * s_page },
    };

    [Theory]
    [MemberData(nameof(BoundaryCases))]
    public async Task CommitOneway_AcrossPageBoundaries_ReceiverSeesEveryByte(int shift, int size)
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        // A live buffer in front moves the next reservation off the page start.
        using ReservedBuffer front = pair.Client.Reserve(shift, oneway: true);

        byte[] expected = Pattern(size, seed: shift + size);
        using (ReservedBuffer buffer = pair.Client.Reserve(size, oneway: true))
        {
            Assert.Equal(size, buffer.MaxSize);
            // Irregular chunks through IBufferWriter, so chunks straddle the page boundaries.
            int written = 0;
            int chunk = 1;
            while (written < size)
            {
                int n = Math.Min(chunk, size - written);
                expected.AsSpan(written, n).CopyTo(buffer.GetSpan(n));
                buffer.Advance(n);
                written += n;
                chunk = chunk * 3 + 7;
            }
            Assert.Equal(size, buffer.WrittenCount);
            buffer.CommitOneway(code: 9);
            Assert.False(buffer.IsPending);
        }

        using Transaction received = pair.Server.Receive();
        Assert.Equal(9u, received.Code);
        Assert.True(received.IsOneway);
        Assert.True(received.Payload.SequenceEqual(expected));
    }

    [Fact]
    public async Task CommitOneway_MoreThanReserved_ThrowsAndTheReservationStaysUsable()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        using ReservedBuffer buffer = pair.Client.Reserve(2 * s_page, oneway: true);
        Pattern(2 * s_page, 1).CopyTo(buffer.Span);

        var error = Assert.Throws<ArgumentOutOfRangeException>(() => buffer.CommitOneway(1, 2 * s_page + 1));
        Assert.Contains("cannot publish more than its reservation", error.Message, StringComparison.Ordinal);
        Assert.True(buffer.IsPending);
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.CommitOneway(1, -1));

        buffer.CommitOneway(1, 2 * s_page);
        using Transaction received = pair.Server.Receive();
        Assert.Equal(2 * s_page, received.Length);
    }

    /// <summary>Timeouts no call accepts: zero, negative but not infinite, longer than a timer holds.</summary>
    public static TheoryData<TimeSpan> InvalidCallTimeouts() => new()
    {
        TimeSpan.Zero,
        TimeSpan.FromMilliseconds(-2),
        TimeSpan.FromSeconds(-5),
        TimeSpan.FromDays(50),
    };

    [Theory]
    [MemberData(nameof(InvalidCallTimeouts))]
    public async Task CommitCall_InvalidTimeout_ThrowsAsCallDoesAndThePeerReceivesNothing(TimeSpan timeout)
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        // On a worker, bounded: a call published with such a timeout may wait for ever.
        await Task.Run(async () =>
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => pair.Client.Call(1, new byte[100], timeout));

            using ReservedBuffer buffer = pair.Client.Reserve(100);
            buffer.Advance(100);
            var error = Assert.Throws<ArgumentOutOfRangeException>(() => buffer.CommitCall(1, timeout: timeout));
            Assert.Equal("timeout", error.ParamName);
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await buffer.CommitCallAsync(1, timeout: timeout));
            Assert.True(buffer.IsPending);

            Assert.False(pair.Server.TryReceive(out _));
            Assert.Equal(1, pair.Client.OutboundLiveBuffers);
        }).WaitAsync(TestTimeouts.Short);
    }

    [Fact]
    public async Task Advance_PastTheReservation_Throws()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        using ReservedBuffer buffer = pair.Client.Reserve(100, oneway: true);
        buffer.Advance(60);
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.Advance(41));
        Assert.Equal(60, buffer.WrittenCount);
        Assert.Equal(40, buffer.GetSpan().Length);
        Assert.Throws<InvalidOperationException>(() => buffer.GetSpan(41));
        Assert.Throws<InvalidOperationException>(() => buffer.GetMemory(41));
        buffer.Advance(40);
        Assert.Throws<InvalidOperationException>(() => buffer.GetSpan());
    }

    [Fact]
    public async Task GetMemory_WritesIntoTheReservation_AndFailsAfterTheCommit()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        Memory<byte> memory;
        using (ReservedBuffer buffer = pair.Client.Reserve(3 * s_page, oneway: true))
        {
            memory = buffer.GetMemory(3 * s_page);
            using (System.Buffers.MemoryHandle pin = memory.Pin())
            {
                Pattern(3 * s_page, 5).CopyTo(memory.Span);
            }
            buffer.Advance(3 * s_page);
            buffer.CommitOneway(2);
        }
        Assert.Throws<ObjectDisposedException>(() => memory.Span.Length);
        using Transaction received = pair.Server.Receive();
        Assert.True(received.Payload.SequenceEqual(Pattern(3 * s_page, 5)));
    }

    [Fact]
    public async Task Dispose_WithoutCommit_GivesTheSpaceBackAndSendsNothing()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        long quota = pair.Client.MaxOnewayMessageSize;
        long freeBefore = pair.Client.OutboundStats.FreeOnewaySpace;

        ReservedBuffer whole = pair.Client.Reserve((int)quota, oneway: true);
        Assert.Equal(1, pair.Client.OutboundLiveBuffers);
        Assert.Equal(0, pair.Client.OutboundStats.FreeOnewaySpace);
        whole.Dispose();
        whole.Dispose();

        Assert.Equal(0, pair.Client.OutboundLiveBuffers);
        Assert.Equal(freeBefore, pair.Client.OutboundStats.FreeOnewaySpace);
        Assert.False(pair.Server.TryReceive(out _));
        // The whole quota is free again: this would wait and fail if the abort had leaked it.
        using ReservedBuffer again = pair.Client.Reserve((int)quota, oneway: true);
        Assert.Throws<ObjectDisposedException>(() => whole.Span.Length);
    }

    [Fact]
    public async Task Reserve_LargerThanTheRegion_ThrowsMessageTooLarge()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        Assert.Throws<MessageTooLargeException>(() => pair.Client.Reserve((int)pair.Client.MaxOnewayMessageSize + 8, oneway: true));
        Assert.Throws<MessageTooLargeException>(() => pair.Client.Reserve((int)pair.Client.MaxMessageSize + 8));
        Assert.Equal(0, pair.Client.OutboundLiveBuffers);
        Assert.Throws<ArgumentOutOfRangeException>(() => pair.Client.Reserve(-1));
    }

    [Fact]
    public async Task Commit_WrongKindOrTwice_Throws()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        ReservedBuffer oneway = pair.Client.Reserve(16, oneway: true);
        Assert.Throws<InvalidOperationException>(() => oneway.CommitCall(1));
        Assert.Throws<InvalidOperationException>(() => oneway.CommitReply());
        oneway.CommitOneway(1);
        Assert.Throws<ObjectDisposedException>(() => oneway.CommitOneway(1));
        oneway.Dispose();

        using ReservedBuffer call = pair.Client.Reserve(16);
        Assert.Throws<InvalidOperationException>(() => call.CommitOneway(1));
        using Transaction first = pair.Server.Receive();
        Assert.False(pair.Server.TryReceive(out _));
    }

    [Fact]
    public async Task CommitCall_ReplyReservedInPlace_RoundTrips()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        Task server = pair.Serve(call =>
        {
            // Echo the request reversed, written straight into the caller's region.
            using ReservedBuffer reply = call.ReserveReply(call.Length);
            ReadOnlySpan<byte> request = call.Payload;
            Span<byte> target = reply.Span;
            for (int i = 0; i < request.Length; i++)
            {
                target[i] = request[request.Length - 1 - i];
            }
            reply.Advance(request.Length);
            reply.CommitReply();
        });

        foreach (int size in new[] { 0, 1, s_page - 1, s_page + 3, 4 * s_page })
        {
            byte[] request = Pattern(size, size);
            using ReservedBuffer buffer = pair.Client.Reserve(size);
            request.CopyTo(buffer.Span);
            using Transaction reply = size % 2 == 0
                ? buffer.CommitCall(7, size, TestTimeouts.Long)
                : await buffer.CommitCallAsync(7, size, TestTimeouts.Long);
            Assert.True(reply.Payload.SequenceEqual(request.Reverse().ToArray()));
        }
        await pair.DisposeAsync();
        await server.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task ReserveReply_DisposedUncommitted_CallerGetsTheErrorReply()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        Task server = pair.Serve(call =>
        {
            ReservedBuffer reply = call.ReserveReply(64);
            Assert.Throws<InvalidOperationException>(() => call.Reply([1]));
            reply.Dispose();
        });

        var error = Assert.Throws<RemoteCallException>(() => pair.Client.Call(3, [1, 2, 3], TestTimeouts.Long));
        Assert.Contains("without replying", error.Message, StringComparison.Ordinal);
        await pair.DisposeAsync();
        await server.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Reserve_AfterThePeerIsGone_ThrowsPeerDied()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        using ReservedBuffer live = pair.Client.Reserve(64, oneway: true);
        await pair.Server.DisposeAsync();
        await Task.Delay(Timeout.Infinite, pair.Client.PeerDied).ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(TestTimeouts.Long);

        Assert.Throws<PeerDiedException>(() => pair.Client.Reserve(64, oneway: true));
        Assert.Throws<PeerDiedException>(() => live.CommitOneway(1));
        Assert.False(live.IsPending);
    }

    internal static byte[] Pattern(int size, int seed)
    {
        byte[] bytes = new byte[size];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}

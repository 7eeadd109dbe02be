using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using PageRange.Serialization;
using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>
/// Per-call options (<see cref="PageRangeCallOptions"/>) on the typed MessagePack forms and on the nested calls of
/// <see cref="CallContext"/>: the deadline, the metadata and clear-on-free reach the other side.
/// </summary>
[SuppressMessage("Trimming", "IL2026", Justification = "Tests run on the JIT.")]
[SuppressMessage("AOT", "IL3050", Justification = "Tests run on the JIT.")]
public sealed class ServerCallOptionsTests
{
    private static PageRangeServerOptions Options() => ServerTestOptions.InProcess(maxThreads: 2);

    private static string? ValueOf(IReadOnlyList<KeyValuePair<string, string>> metadata, string key) =>
        metadata.Where(pair => pair.Key == key).Select(pair => pair.Value).FirstOrDefault();

    [Fact]
    public async Task TypedCallAndCallAsync_WithOptions_HandlerSeesDeadlineAndMetadata()
    {
        string name = ControlHandshakeTests.UniqueName();
        var seen = new ConcurrentQueue<(string? Tenant, DateTimeOffset? Deadline)>();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder
            .Map<AddRequest, AddResponse>(1, (request, ctx) =>
            {
                seen.Enqueue((ValueOf(ctx.Metadata, "tenant"), ctx.Deadline));
                return new AddResponse(request.A + request.B);
            }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        DateTimeOffset deadline = DateTimeOffset.UtcNow.AddMinutes(5);
        var callOptions = new PageRangeCallOptions { Deadline = deadline, Metadata = [new("tenant", "blue")] };

        AddResponse sync = await Task.Run(() => client.Call<AddRequest, AddResponse>(new AddRequest(40, 2), callOptions, code: 1))
            .WaitAsync(TestTimeouts.Long);
        AddResponse async = await client.CallAsync<AddRequest, AddResponse>(new AddRequest(6, 7), callOptions, code: 1)
            .AsTask().WaitAsync(TestTimeouts.Long);
        // Without options nothing is carried.
        AddResponse plain = await client.CallAsync<AddRequest, AddResponse>(new AddRequest(1, 1), code: 1).AsTask().WaitAsync(TestTimeouts.Long);

        Assert.Equal(42, sync.Sum);
        Assert.Equal(13, async.Sum);
        Assert.Equal(2, plain.Sum);
        Assert.Equal([("blue", deadline), ("blue", deadline), (null, null)], seen.Select(entry => (entry.Tenant, entry.Deadline)));
    }

    [Fact]
    public async Task TypedCall_DeadlineAlreadyPast_FailsBeforeSending()
    {
        string name = ControlHandshakeTests.UniqueName();
        int handled = 0;
        await using var server = PageRangeServer.Start(name, Options(), builder => builder
            .Map<AddRequest, AddResponse>(1, (request, _) =>
            {
                Interlocked.Increment(ref handled);
                return new AddResponse(0);
            }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        var past = new PageRangeCallOptions { Deadline = DateTimeOffset.UtcNow.AddSeconds(-1) };
        Assert.Throws<TimeoutException>(() => client.Call<AddRequest, AddResponse>(new AddRequest(1, 2), past, code: 1));
        await Assert.ThrowsAsync<TimeoutException>(
            () => client.CallAsync<AddRequest, AddResponse>(new AddRequest(1, 2), past, code: 1).AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Equal(0, Volatile.Read(ref handled));
    }

    [Fact]
    public async Task TypedSendOnewayAndAsync_WithOptions_HandlerSeesMetadataInOrder()
    {
        string name = ControlHandshakeTests.UniqueName();
        var seen = new ConcurrentQueue<(int Seq, string? Tag)>();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder
            .MapOneway<Note>(10, (note, ctx) => seen.Enqueue((note.Seq, ValueOf(ctx.Metadata, "tag")))));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        client.SendOneway(new Note(1), new PageRangeCallOptions { Metadata = [new("tag", "first")] }, code: 10);
        await client.SendOnewayAsync(new Note(2), new PageRangeCallOptions { Metadata = [new("tag", "second")], ClearOnFree = true }, code: 10)
            .AsTask().WaitAsync(TestTimeouts.Long);
        client.SendOneway(new Note(3), code: 10);
        await PageRangeServerTests.WaitUntilAsync(() => seen.Count == 3);
        Assert.Equal([(1, "first"), (2, "second"), (3, null)], seen);
    }

    [Fact]
    public async Task CallContextCalls_WithOptions_ClientSeesMetadataAndClearOnFree()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder.Map(1, (tx, ctx) =>
        {
            var callOptions = new PageRangeCallOptions { Metadata = [new("hop", "raw")], ClearOnFree = true };
            using Transaction raw = ctx.Call(20, [5], callOptions, TestTimeouts.Long);
            AddResponse typed = ctx.Call<AddRequest, AddResponse>(new AddRequest(2, 3),
                new PageRangeCallOptions { Metadata = [new("hop", "typed")] }, code: 21, timeout: TestTimeouts.Long);
            tx.Reply([raw.Payload[0], (byte)typed.Sum]);
        }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        var nested = new ConcurrentQueue<(uint Code, string? Hop, bool ClearOnFree)>();
        // The client's thread waiting in its call runs the server's calls back into it (binder's transaction stack).
        client.SetNestedCallHandler(tx =>
        {
            using (tx)
            {
                nested.Enqueue((tx.Code, ValueOf(tx.Metadata, "hop"), (tx.Flags & TransactionFlags.ClearOnFree) != 0));
                if (tx.Code == 20)
                {
                    tx.Reply([(byte)(tx.Payload[0] * 2)]);
                }
                else
                {
                    AddRequest request = tx.Deserialize<AddRequest>();
                    tx.Reply(new AddResponse(request.A + request.B));
                }
            }
        });
        using Transaction reply = await Task.Run(() => client.Call(1, ReadOnlySpan<byte>.Empty, TestTimeouts.Long)).WaitAsync(TestTimeouts.Long);
        Assert.Equal(new byte[] { 10, 5 }, reply.Payload.ToArray());
        Assert.Equal([(20u, "raw", true), (21u, "typed", false)], nested);
    }

    [Fact]
    public async Task TypedForms_NullCallOptions_Throw()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using var server = PageRangeServer.Start(name, Options(), _ => { });
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        Assert.Throws<ArgumentNullException>(() => client.SendOneway(new Note(1), (PageRangeCallOptions)null!));
        Assert.Throws<ArgumentNullException>(() => client.Call<AddRequest, AddResponse>(new AddRequest(1, 2), (PageRangeCallOptions)null!));
        await Assert.ThrowsAsync<ArgumentNullException>(() => client.CallAsync<AddRequest, AddResponse>(new AddRequest(1, 2), (PageRangeCallOptions)null!).AsTask());
        await Assert.ThrowsAsync<ArgumentNullException>(() => client.SendOnewayAsync(new Note(1), (PageRangeCallOptions)null!).AsTask());
    }
}

using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Tests.Diagnostics;

/// <summary><see cref="PageRangeConnection.DumpState"/>: binder's debugfs view of both regions of a live connection.</summary>
public sealed class DumpStateTests(ITestOutputHelper output)
{
    private static readonly int s_page = SharedRegion.PageSize;

    [Fact]
    public async Task DumpState_HeldOneways_ShowsBothRegionsBuffersPagesWatermarksOnewaySpaceAndRingPositions()
    {
        var options = new PageRangeOptions { RegionSize = 256L << 10, TransactionRingCapacity = 64, FreeRingCapacity = 64 };
        await using LoopbackPair pair = await LoopbackPair.OpenAsync(options, options);
        pair.Client.SendOneway(5, new byte[3 * s_page]);
        pair.Client.SendOneway(6, new byte[3 * s_page]);
        Transaction held = pair.Server.Receive();

        string client = pair.Client.DumpState();
        string server = pair.Server.DumpState();
        output.WriteLine(client);
        output.WriteLine(server);

        // The client writes into the server's region: its allocator's view, binder's lines.
        string clientOut = Section(client, "outbound");
        long quota = (((256L << 10) - HeaderBytes(clientOut)) / 2) - (6 * s_page);
        Assert.Contains($"buffer: 0 size {3 * s_page} pid {Environment.ProcessId} oneway allocated", clientOut, StringComparison.Ordinal);
        Assert.Contains($"buffer: {3 * s_page} size {3 * s_page} pid {Environment.ProcessId} oneway allocated", clientOut, StringComparison.Ordinal);
        Assert.Contains($"free oneway space: {quota}", clientOut, StringComparison.Ordinal);
        Assert.Matches(@"pages: 6:0:\d+", clientOut);
        Assert.Contains("pages high watermark: 6", clientOut, StringComparison.Ordinal);
        Assert.Contains("ring positions: tx tail 2 (ours) head 2 (peer's) of 64, free head 0 (ours) tail 0 (peer's) of 64", clientOut, StringComparison.Ordinal);
        Assert.Contains("ring slots published: 2, live buffers: 2", clientOut, StringComparison.Ordinal);
        // 64-slot rings keep 8 slots beyond the live limit (56) for payloads carried inline; oneways never are.
        Assert.Contains("payloads inline: 0 sent, 0 of the live ones (on, while at most 8 ring slots wait)", clientOut, StringComparison.Ordinal);
        Assert.Contains("direct lines: 0 replies, 0 calls written", clientOut, StringComparison.Ordinal);

        // The server receives in that region: one oneway delivered, the next waits behind it (binder's oneway order).
        string serverIn = Section(server, "inbound");
        Assert.Contains("buffers: 2", serverIn, StringComparison.Ordinal);
        Assert.Matches($@"buffer: 0 size {3 * s_page} id \d+ code 5 oneway delivered", serverIn);
        Assert.Matches($@"buffer: {3 * s_page} size {3 * s_page} id \d+ code 6 oneway backlog", serverIn);
        Assert.Contains("pages high watermark: 6", serverIn, StringComparison.Ordinal);
        Assert.Contains("ring slots taken: 2 (0 transactions with their payload inline), frees published: 0", serverIn, StringComparison.Ordinal);
        Assert.Contains("direct lines: 0 replies taken (expecting call 0), 0 calls taken", serverIn, StringComparison.Ordinal);
        Assert.Contains("ring positions: tx head 2 (ours) tail 2 (peer's) of 64, free tail 0 (ours) head 0 (peer's) of 64", serverIn, StringComparison.Ordinal);
        Assert.Matches(@"resident \d+ bytes \(\d+ pages, \d+ of them header\)", serverIn);

        // The other direction is idle, and says so.
        Assert.Contains("buffers: 0", Section(server, "outbound"), StringComparison.Ordinal);
        Assert.Contains("buffers: 0", Section(client, "inbound"), StringComparison.Ordinal);

        // Freeing moves the free ring and hands the backlogged oneway out.
        held.Dispose();
        serverIn = Section(pair.Server.DumpState(), "inbound");
        Assert.Contains("free tail 1 (ours)", serverIn, StringComparison.Ordinal);
        Assert.Matches($@"buffer: {3 * s_page} size {3 * s_page} id \d+ code 6 oneway ready", serverIn);
        pair.Server.Receive().Dispose();
    }

    /// <summary>Each direction says whether its publishes or frees go without the doorbell's fence, and its park barriers.</summary>
    [Theory]
    [InlineData(WaitStrategy.BusySpin, true)]
    [InlineData(WaitStrategy.SpinThenPark, false)]
    public async Task DumpState_SaysWhichDoorbellsRingWithoutAFence(WaitStrategy strategy, bool fenceFree)
    {
        var options = new PageRangeOptions { WaitStrategy = strategy };
        await using LoopbackPair pair = await LoopbackPair.OpenAsync(options, options);
        string client = pair.Client.DumpState();
        output.WriteLine(client);
        string outbound = Section(client, "outbound");
        string inbound = Section(client, "inbound");
        if (fenceFree)
        {
            Assert.Contains("fences: publishes without a fence (the peer's readers park with the barrier); waits for room park with the park barrier: 0 parks, 0 barriers, 0 refused", outbound, StringComparison.Ordinal);
            Assert.Contains("fences: frees without a fence (the peer's writer parks with the barrier); readers park with the park barrier:", inbound, StringComparison.Ordinal);
        }
        else
        {
            // Spin-then-park: the adaptive barrier, on until the readers park at nearly every wait.
            Assert.Contains("fences: publishes without a fence while the peer's readers say they park with the barrier; waits for room park without the park barrier: 0 parks, 0 barriers, 0 refused", outbound, StringComparison.Ordinal);
            Assert.Contains("fences: frees with a fence; readers park with (adaptive, now on) the park barrier:", inbound, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task DumpState_AfterDispose_StillAnswers()
    {
        LoopbackPair pair = await LoopbackPair.OpenAsync();
        await pair.DisposeAsync();

        string dump = pair.Client.DumpState();

        Assert.Contains("peer alive: False", dump, StringComparison.Ordinal);
        Assert.Contains("(closed)", dump, StringComparison.Ordinal);
    }

    /// <summary>The lines of one direction's section, "outbound (...)" or "inbound (...)", up to the next section.</summary>
    private static string Section(string dump, string direction)
    {
        int start = dump.IndexOf($"\n{direction} (", StringComparison.Ordinal);
        Assert.True(start >= 0, $"no {direction} section in:\n{dump}");
        int end = dump.IndexOf("bound (", start + direction.Length + 2, StringComparison.Ordinal);
        return end < 0 ? dump[start..] : dump[start..dump.LastIndexOf('\n', end)];
    }

    private static long HeaderBytes(string section)
    {
        System.Text.RegularExpressions.Match match = System.Text.RegularExpressions.Regex.Match(section, @"data area (\d+) bytes at (\d+)");
        Assert.True(match.Success, section);
        return long.Parse(match.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
    }
}

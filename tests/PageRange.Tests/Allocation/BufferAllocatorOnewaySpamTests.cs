using PageRange.Allocation;

namespace PageRange.Tests.Allocation;

/// <summary>
/// Oneway-spam detection exactly at binder's edges (BINDER.md B.8): the check runs only when less than a tenth of the
/// area is left in the quota; a sender is a suspect with more than 50 live oneway buffers or more than a quarter of
/// the area; C's latch reports once per low-quota episode.
/// </summary>
public sealed class BufferAllocatorOnewaySpamTests : IDisposable
{
    private static readonly long s_page = AllocatorHarness.Page;

    // Ten pages: S/10 = P, S/4 = 2.5 P, S/2 = 5 P.
    private readonly AllocatorHarness _harness = new(10);
    private readonly List<OnewaySpamSuspectedEventArgs> _reports = [];

    public BufferAllocatorOnewaySpamTests() => Allocator.OnewaySpamSuspected += (_, e) => _reports.Add(e);

    private BufferAllocator Allocator => _harness.Allocator;

    private long S => Allocator.DataSize;

    [Fact]
    public void Spam_QuotaLeftExactlyATenth_NotChecked_OneByteLess_Reported()
    {
        // Sender 1 holds more than a quarter of the area, but the quota is still healthy.
        Allocator.Reserve((S / 4) + 8, oneway: true, senderPid: 1);
        // Leaves exactly S/10: "less than a tenth" is false, so no check.
        Allocator.Reserve(Allocator.FreeOnewaySpace - (S / 10), oneway: true, senderPid: 1);
        Assert.Equal(S / 10, Allocator.FreeOnewaySpace);
        Assert.Empty(_reports);

        // Eight bytes more and the quota is below a tenth: reported, and the reservation succeeded.
        long offset = Allocator.Reserve(8, oneway: true, senderPid: 1);
        OnewaySpamSuspectedEventArgs report = Assert.Single(_reports);
        Assert.Equal(1, report.SenderPid);
        Assert.Equal(offset, report.Offset);
        Assert.Equal(3, report.BufferCount);
        Assert.Equal(Allocator.OnewayQuota - (S / 10) + 8, report.TotalBytes);
        Assert.Equal((S / 10) - 8, report.FreeOnewaySpace);
        Assert.Contains(_harness.LogLines, l => l == $"pid 1 spamming oneway? 3 buffers allocated for a total size of {report.TotalBytes}");
        Assert.Equal(1, Allocator.GetStats().OnewaySpamReports);
    }

    [Fact]
    public void Spam_SenderBytesExactlyAQuarter_NotSuspect_EightMore_Reported()
    {
        // Another sender brings the quota low without being a suspect itself (one buffer, under a quarter).
        Allocator.Reserve((3 * s_page / 2) + 8, oneway: true, senderPid: 2);
        Allocator.Reserve(S / 4, oneway: true, senderPid: 1);
        Assert.True(Allocator.FreeOnewaySpace < S / 10);
        Assert.Empty(_reports);

        // Sender 2 reserving while the quota is low is checked too, and is no suspect.
        Allocator.Reserve(8, oneway: true, senderPid: 2);
        Assert.Empty(_reports);

        Allocator.Reserve(8, oneway: true, senderPid: 1);
        OnewaySpamSuspectedEventArgs report = Assert.Single(_reports);
        Assert.Equal(1, report.SenderPid);
        Assert.Equal((S / 4) + 8, report.TotalBytes);
        Assert.Equal(2, report.BufferCount);
    }

    [Fact]
    public void Spam_FiftyBuffers_NotSuspect_FiftyFirst_Reported_ThenLatchedUntilQuotaRecovers()
    {
        for (int i = 0; i < BufferAllocator.SpamBufferThreshold - 1; i++)
        {
            Allocator.Reserve(8, oneway: true, senderPid: 1);
        }
        // Two other senders, each under every threshold, bring the quota just below a tenth.
        Allocator.Reserve(S / 4, oneway: true, senderPid: 3);
        long bulk = Allocator.Reserve(Allocator.FreeOnewaySpace - (S / 10) + 16, oneway: true, senderPid: 4);
        Assert.Equal((S / 10) - 16, Allocator.FreeOnewaySpace);
        Assert.Empty(_reports);

        Allocator.Reserve(8, oneway: true, senderPid: 1);   // the 50th: not more than 50
        Assert.Empty(_reports);
        Allocator.Reserve(8, oneway: true, senderPid: 1);   // the 51st
        OnewaySpamSuspectedEventArgs report = Assert.Single(_reports);
        Assert.Equal(51, report.BufferCount);
        Assert.Equal(51 * 8, report.TotalBytes);

        // Latched: still low, still a suspect, but not reported again; a sync reservation does not reset the latch.
        Allocator.Reserve(64, oneway: false, senderPid: 1);
        Allocator.Reserve(0, oneway: true, senderPid: 1);
        Assert.Single(_reports);

        // A oneway reservation that finds the quota healthy again clears the latch...
        Allocator.Abort(bulk);
        Allocator.Reserve(8, oneway: true, senderPid: 1);
        Assert.Single(_reports);
        // ...so the next low-quota episode is reported again.
        Allocator.Reserve(Allocator.FreeOnewaySpace - (S / 10) + 8, oneway: true, senderPid: 4);
        Assert.Single(_reports);
        Allocator.Reserve(8, oneway: true, senderPid: 1);
        Assert.Equal(2, _reports.Count);
        Assert.Equal(2, Allocator.GetStats().OnewaySpamReports);
        Allocator.Validate();
    }

    [Fact]
    public void Spam_InTreeMode_SameRules()
    {
        for (int i = 0; i < 60; i++)
        {
            Allocator.Reserve(8, oneway: false, senderPid: 1);
        }
        Assert.Equal(AllocatorMode.Tree, Allocator.Mode);
        Allocator.Reserve((S / 4) + 8, oneway: true, senderPid: 1);
        Allocator.Reserve(Allocator.FreeOnewaySpace - (S / 10), oneway: true, senderPid: 2);
        Assert.Empty(_reports);
        Allocator.Reserve(8, oneway: true, senderPid: 1);
        Assert.Equal(2, Assert.Single(_reports).BufferCount);
    }

    public void Dispose() => _harness.Dispose();
}

using System.Text;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Memory;

/// <summary>
/// The monitor's decision is driven here by made-up readings (no real pressure is needed), and its action is checked
/// on a real range: pages really come back to the kernel when a signal crosses its threshold, and only then.
/// </summary>
public sealed class MemoryPressureMonitorTests : IDisposable
{
    private static readonly int s_page = SharedRegion.PageSize;
    private static readonly MemoryPressureReading s_calm = new(0.0, 900, 1000, 10.0);

    private readonly Shrinker _shrinker = new();
    private readonly SharedRegion _region;
    private readonly ShrinkablePageRange _range;

    public MemoryPressureMonitorTests()
    {
        _region = SharedRegion.Create("monitor", 8 * s_page);
        _range = new ShrinkablePageRange(_region, 0, 8, _shrinker);
        _range.UseRange(0, 8);
        _range.StopUsingRange(0, 6);
    }

    public void Dispose()
    {
        _range.Dispose();
        _region.Dispose();
    }

    // A monitor that polls only when told to: its period is far beyond any test.
    private static ShrinkerOptions Manual(Action<ShrinkerOptions>? configure = null)
    {
        var options = new ShrinkerOptions { PollingPeriod = TimeSpan.FromHours(1) };
        configure?.Invoke(options);
        return options;
    }

    // psi, MemAvailable, MemTotal, GC load -> what the default thresholds (10, 5 %, 90 %) make of them.
    public static TheoryData<double?, long?, long?, double?, MemoryPressureSignals> Readings => new()
    {
        { 0.0, 900, 1000, 10.0, MemoryPressureSignals.None },
        { 9.99, 900, 1000, 10.0, MemoryPressureSignals.None },
        { 10.0, 900, 1000, 10.0, MemoryPressureSignals.Psi },
        { 0.0, 50, 1000, 10.0, MemoryPressureSignals.None },
        { 0.0, 49, 1000, 10.0, MemoryPressureSignals.MemAvailable },
        { 0.0, 900, 1000, 89.9, MemoryPressureSignals.None },
        { 0.0, 900, 1000, 90.0, MemoryPressureSignals.GcMemoryLoad },
        { 55.0, 1, 1000, 99.0, MemoryPressureSignals.Psi | MemoryPressureSignals.MemAvailable | MemoryPressureSignals.GcMemoryLoad },
        // A signal the system does not offer never counts.
        { null, null, null, null, MemoryPressureSignals.None },
        { null, 1, null, null, MemoryPressureSignals.None },
        { null, 1, 0, null, MemoryPressureSignals.None },
    };

    [Theory]
    [MemberData(nameof(Readings))]
    public void Evaluate_DefaultThresholds_ReportsTheSignalsThatCrossThem(
        double? psi, long? available, long? total, double? gcLoad, MemoryPressureSignals expected) =>
        Assert.Equal(expected, new MemoryPressureReading(psi, available, total, gcLoad).Evaluate(new ShrinkerOptions()));

    [Fact]
    public void Evaluate_ThresholdSwitchedOff_IgnoresThatSignal()
    {
        var reading = new MemoryPressureReading(100.0, 0, 1000, 100.0);
        var options = new ShrinkerOptions { PsiSomeAvg10Threshold = null, GcMemoryLoadThresholdPercent = null };
        Assert.Equal(MemoryPressureSignals.MemAvailable, reading.Evaluate(options));
        options.MinAvailableMemoryPercent = null;
        Assert.Equal(MemoryPressureSignals.None, reading.Evaluate(options));
    }

    [Fact]
    public void Poll_UnderPressure_ScansAndMemoryComesBack()
    {
        using MemoryPressureMonitor monitor = _shrinker.StartMonitorCore(Manual(), () => s_calm with { PsiSomeAvg10 = 40 });
        Assert.Equal(8 * s_page, _region.ResidentBytes);

        Assert.Equal(MemoryPressureSignals.Psi, monitor.Poll());
        Assert.Equal(2 * s_page, _region.ResidentBytes);
        Assert.Equal(6, monitor.PagesFreedUnderPressure);
        Assert.Equal(1, monitor.PressurePolls);
        Assert.Equal(MemoryPressureSignals.Psi, monitor.LastSignals);
        Assert.Equal(40, monitor.LastReading.PsiSomeAvg10);
        Assert.Equal(PageState.Used, _range.GetPageState(7));
    }

    [Fact]
    public void Poll_WithoutPressure_ReclaimsNothing()
    {
        using MemoryPressureMonitor monitor = _shrinker.StartMonitorCore(Manual(), () => s_calm);
        Assert.Equal(MemoryPressureSignals.None, monitor.Poll());
        Assert.Equal(MemoryPressureSignals.None, monitor.Poll());
        Assert.Equal(2, monitor.Polls);
        Assert.Equal(0, monitor.PressurePolls);
        Assert.Equal(8 * s_page, _region.ResidentBytes);
        Assert.Equal(6, _shrinker.Count());
    }

    [Fact]
    public void Poll_MaxPagesPerScan_BoundsEachPoll()
    {
        using MemoryPressureMonitor monitor = _shrinker.StartMonitorCore(
            Manual(o => o.MaxPagesPerScan = 4), () => s_calm with { MemAvailableBytes = 1 });
        monitor.Poll();
        Assert.Equal(4, monitor.PagesFreedUnderPressure);
        monitor.Poll();
        Assert.Equal(6, monitor.PagesFreedUnderPressure);
        Assert.Equal(2 * s_page, _region.ResidentBytes);
    }

    [Fact]
    public void Poll_IdleAge_ReclaimsIdlePagesWithoutPressure()
    {
        using (MemoryPressureMonitor monitor = _shrinker.StartMonitorCore(Manual(o => o.IdleAge = TimeSpan.FromHours(1)), () => s_calm))
        {
            monitor.Poll();
            Assert.Equal(0, monitor.PagesFreedIdle);
        }
        using (MemoryPressureMonitor monitor = _shrinker.StartMonitorCore(Manual(o => o.IdleAge = TimeSpan.Zero), () => s_calm))
        {
            monitor.Poll();
            Assert.Equal(6, monitor.PagesFreedIdle);
            Assert.Equal(0, monitor.PagesFreedUnderPressure);
            Assert.Equal(2 * s_page, _region.ResidentBytes);
        }
    }

    [Fact]
    public void StartMonitor_Timer_PollsUntilDisposed()
    {
        int reads = 0;
        using var pressured = new ManualResetEventSlim();
        MemoryPressureReading Read()
        {
            if (Interlocked.Increment(ref reads) >= 3)
            {
                pressured.Set();
                return s_calm with { GcMemoryLoadPercent = 95 };
            }
            return s_calm;
        }

        MemoryPressureMonitor monitor = _shrinker.StartMonitorCore(new ShrinkerOptions { PollingPeriod = TimeSpan.FromMilliseconds(5) }, Read);
        Assert.True(monitor.IsRunning);
        Assert.Same(monitor, _shrinker.Monitor);
        Assert.True(pressured.Wait(TestTimeouts.Long));
        Assert.True(SpinWait.SpinUntil(() => _region.ResidentBytes == 2 * s_page, TestTimeouts.Long));

        monitor.Dispose();
        Assert.False(monitor.IsRunning);
        Assert.Null(_shrinker.Monitor);
        // Dispose waited for any poll in flight; none runs afterwards.
        int readsAtDispose = Volatile.Read(ref reads);
        Assert.Equal(MemoryPressureSignals.None, monitor.Poll());
        Assert.Equal(readsAtDispose, Volatile.Read(ref reads));
        monitor.Dispose();
    }

    [Fact]
    public void StartMonitor_Disabled_StartsNothing()
    {
        int reads = 0;
        using MemoryPressureMonitor monitor = _shrinker.StartMonitorCore(
            new ShrinkerOptions { Enabled = false, PollingPeriod = TimeSpan.FromMilliseconds(1) },
            () =>
            {
                Interlocked.Increment(ref reads);
                return s_calm;
            });
        Assert.False(monitor.IsRunning);
        Assert.Null(_shrinker.Monitor);
        // A disabled monitor does not stand in the way of a real one.
        using MemoryPressureMonitor other = _shrinker.StartMonitorCore(Manual(), () => s_calm);
        Assert.Same(other, _shrinker.Monitor);
        Assert.Equal(0, Volatile.Read(ref reads));
        Assert.Equal(0, monitor.Polls);
    }

    [Fact]
    public void StartMonitor_SecondWhileRunning_ThrowsUntilTheFirstIsDisposed()
    {
        MemoryPressureMonitor first = _shrinker.StartMonitorCore(Manual(), () => s_calm);
        Assert.Throws<InvalidOperationException>(() => _shrinker.StartMonitorCore(Manual(), () => s_calm));
        first.Dispose();
        using MemoryPressureMonitor second = _shrinker.StartMonitor(Manual());
        Assert.True(second.IsRunning);
    }

    [Fact]
    public void StartMonitor_CopiesOptions()
    {
        ShrinkerOptions options = Manual(o => o.MaxPagesPerScan = 1);
        using MemoryPressureMonitor monitor = _shrinker.StartMonitorCore(options, () => s_calm with { PsiSomeAvg10 = 100 });
        options.MaxPagesPerScan = long.MaxValue;
        options.PsiSomeAvg10Threshold = null;
        monitor.Poll();
        Assert.Equal(1, monitor.PagesFreedUnderPressure);
    }

    [Theory]
    [InlineData(nameof(ShrinkerOptions.PollingPeriod))]
    [InlineData(nameof(ShrinkerOptions.PsiSomeAvg10Threshold))]
    [InlineData(nameof(ShrinkerOptions.MinAvailableMemoryPercent))]
    [InlineData(nameof(ShrinkerOptions.GcMemoryLoadThresholdPercent))]
    [InlineData(nameof(ShrinkerOptions.MaxPagesPerScan))]
    [InlineData(nameof(ShrinkerOptions.IdleAge))]
    public void StartMonitor_BadOption_ThrowsNamingIt(string name)
    {
        var options = new ShrinkerOptions();
        switch (name)
        {
            case nameof(ShrinkerOptions.PollingPeriod): options.PollingPeriod = TimeSpan.Zero; break;
            case nameof(ShrinkerOptions.PsiSomeAvg10Threshold): options.PsiSomeAvg10Threshold = double.NaN; break;
            case nameof(ShrinkerOptions.MinAvailableMemoryPercent): options.MinAvailableMemoryPercent = -1; break;
            case nameof(ShrinkerOptions.GcMemoryLoadThresholdPercent): options.GcMemoryLoadThresholdPercent = 101; break;
            case nameof(ShrinkerOptions.MaxPagesPerScan): options.MaxPagesPerScan = 0; break;
            default: options.IdleAge = TimeSpan.FromSeconds(-1); break;
        }
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => _shrinker.StartMonitor(options));
        Assert.Equal(name, error.ParamName);
        Assert.Null(_shrinker.Monitor);
    }

    [Fact]
    public void Reader_ParsesPsiAndMemInfo()
    {
        byte[] psi = "some avg10=12.34 avg60=1.00 avg300=0.50 total=123\nfull avg10=99.00 avg60=0.00 avg300=0.00 total=0\n"u8.ToArray();
        Assert.Equal(12.34, MemoryPressureReader.ParsePsiSomeAvg10(psi));
        Assert.Null(MemoryPressureReader.ParsePsiSomeAvg10("full avg10=1.00\n"u8));
        Assert.Null(MemoryPressureReader.ParsePsiSomeAvg10([]));

        byte[] memInfo = "MemTotal:       24684084 kB\nMemFree:         1000 kB\nMemAvailable:   24306880 kB\n"u8.ToArray();
        Assert.Equal(24684084L * 1024, MemoryPressureReader.ParseMemInfoBytes(memInfo, "MemTotal:"u8));
        Assert.Equal(24306880L * 1024, MemoryPressureReader.ParseMemInfoBytes(memInfo, "MemAvailable:"u8));
        Assert.Null(MemoryPressureReader.ParseMemInfoBytes(memInfo, "SwapTotal:"u8));
        Assert.Null(MemoryPressureReader.ParseMemInfoBytes("MemTotal: lots\n"u8, "MemTotal:"u8));
    }

    [Fact]
    public void Reader_FilesGivenOrMissing_ReadsOrReportsNull()
    {
        string directory = Directory.CreateTempSubdirectory("pagerange-psi-").FullName;
        try
        {
            string psiPath = Path.Combine(directory, "memory");
            string memInfoPath = Path.Combine(directory, "meminfo");
            File.WriteAllText(psiPath, "some avg10=71.50 avg60=0.00 avg300=0.00 total=0\n", Encoding.ASCII);
            File.WriteAllText(memInfoPath, "MemTotal: 2000 kB\nMemAvailable: 20 kB\n", Encoding.ASCII);

            MemoryPressureReading reading = new MemoryPressureReader(psiPath, memInfoPath).Read();
            Assert.Equal(71.5, reading.PsiSomeAvg10);
            Assert.Equal(20 * 1024, reading.MemAvailableBytes);
            Assert.Equal(2000 * 1024, reading.MemTotalBytes);
            Assert.Equal(MemoryPressureSignals.Psi | MemoryPressureSignals.MemAvailable,
                reading.Evaluate(new ShrinkerOptions()) & ~MemoryPressureSignals.GcMemoryLoad);

            MemoryPressureReading missing = new MemoryPressureReader(
                Path.Combine(directory, "absent"), Path.Combine(directory, "absent-too")).Read();
            Assert.Null(missing.PsiSomeAvg10);
            Assert.Null(missing.MemAvailableBytes);
            Assert.Null(missing.MemTotalBytes);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void Reader_ThisMachine_ReadsSaneValues()
    {
        GC.Collect();
        MemoryPressureReading reading = new MemoryPressureReader().Read();
        Assert.InRange(reading.MemTotalBytes!.Value, 1, long.MaxValue);
        Assert.InRange(reading.MemAvailableBytes!.Value, 0, reading.MemTotalBytes.Value);
        Assert.InRange(reading.GcMemoryLoadPercent!.Value, 0, 100);
        if (File.Exists(MemoryPressureReader.DefaultPsiPath) && reading.PsiSomeAvg10 is { } psi)
        {
            Assert.InRange(psi, 0, 100);
        }
    }
}

namespace PageRange.Hosting;

/// <summary>
/// The connection settings of a hosted server or client, as plain values that configuration can bind: each one left
/// null keeps <see cref="PageRangeOptions"/>' default. Checked at start-up (not when set), so a bad value in
/// configuration is reported by name instead of throwing inside the binder.
/// </summary>
/// <remarks>The names and rules are those of <see cref="PageRangeOptions"/>; see there what each one does.</remarks>
public sealed class PageRangeConnectionSettings
{
    /// <summary><see cref="PageRangeOptions.RegionSize"/>: bytes, a page multiple from 64 KiB to 1 GiB, and at least a page
    /// more than the header pages of its rings (136 KiB with the default rings; see <see cref="PageRangeOptions.Validate"/>).</summary>
    public long? RegionSize { get; set; }

    /// <summary><see cref="PageRangeOptions.TransactionRingCapacity"/>: a power of two from 16 to 65536.</summary>
    public int? TransactionRingCapacity { get; set; }

    /// <summary><see cref="PageRangeOptions.FreeRingCapacity"/>: a power of two from 16 to 65536.</summary>
    public int? FreeRingCapacity { get; set; }

    /// <summary><see cref="PageRangeOptions.ReceiveThreads"/>: from 1 to 256.</summary>
    public int? ReceiveThreads { get; set; }

    /// <summary><see cref="PageRangeOptions.MaxConcurrentCalls"/>: from 1 to 65535.</summary>
    public int? MaxConcurrentCalls { get; set; }

    /// <summary><see cref="PageRangeOptions.MaxCallDepth"/>: from 0 to 1024.</summary>
    public int? MaxCallDepth { get; set; }

    /// <summary><see cref="PageRangeOptions.ConnectTimeout"/>: positive, or infinite (<c>-00:00:00.001</c>).</summary>
    public TimeSpan? ConnectTimeout { get; set; }

    /// <summary><see cref="PageRangeOptions.HelloTimeout"/>: positive, or infinite.</summary>
    public TimeSpan? HelloTimeout { get; set; }

    /// <summary><see cref="PageRangeOptions.CallTimeout"/>: positive, or infinite.</summary>
    public TimeSpan? CallTimeout { get; set; }

    /// <summary><see cref="PageRangeOptions.RegionFullTimeout"/>: zero or positive, or infinite.</summary>
    public TimeSpan? RegionFullTimeout { get; set; }

    /// <summary><see cref="PageRangeOptions.ParkTimeout"/>: from 1 millisecond to 10 seconds.</summary>
    public TimeSpan? ParkTimeout { get; set; }

    /// <summary><see cref="PageRangeOptions.SpinDuration"/>: from zero to one second.</summary>
    public TimeSpan? SpinDuration { get; set; }

    /// <summary><see cref="PageRangeOptions.WaitStrategy"/>.</summary>
    public WaitStrategy? WaitStrategy { get; set; }

    /// <summary><see cref="PageRangeOptions.MaxPeerRegionSize"/>: bytes, a page multiple from 64 KiB to 1 GiB.</summary>
    public long? MaxPeerRegionSize { get; set; }

    /// <summary><see cref="PageRangeOptions.MaxHandshakesPerUid"/>: from 1 to 64 (a listener's; a client never uses it).</summary>
    public int? MaxHandshakesPerUid { get; set; }

    /// <summary><see cref="PageRangeOptions.MaxHandshakesPerProcess"/>: from 1 to 64 (a listener's; a client never uses it).</summary>
    public int? MaxHandshakesPerProcess { get; set; }

    /// <summary><see cref="PageRangeOptions.AllowAnyUid"/>.</summary>
    public bool? AllowAnyUid { get; set; }

    /// <summary>Added to <see cref="PageRangeOptions.AllowedUids"/>.</summary>
    /// <remarks>Empty by default: only this process's own uid.</remarks>
    public IList<uint> AllowedUids { get; } = [];

    /// <summary>Adds a message naming each bad setting to <paramref name="errors"/>.</summary>
    /// <param name="prefix">What the messages start with, e.g. <c>PageRange server 'calc': ConnectionOptions.</c>.</param>
    /// <param name="errors">Where the messages go.</param>
    internal void Validate(string prefix, List<string> errors)
    {
        int before = errors.Count;
        var check = new SettingsCheck(prefix, errors);
        check.RegionSize(nameof(RegionSize), RegionSize);
        check.RingCapacity(nameof(TransactionRingCapacity), TransactionRingCapacity);
        check.RingCapacity(nameof(FreeRingCapacity), FreeRingCapacity);
        check.Range(nameof(ReceiveThreads), ReceiveThreads, 1, PageRangeOptions.MaxReceiveThreads);
        check.Range(nameof(MaxConcurrentCalls), MaxConcurrentCalls, 1, 65535);
        check.Range(nameof(MaxCallDepth), MaxCallDepth, 0, PageRangeOptions.MaxCallDepthLimit);
        check.Timeout(nameof(ConnectTimeout), ConnectTimeout, allowZero: false);
        check.Timeout(nameof(HelloTimeout), HelloTimeout, allowZero: false);
        check.Timeout(nameof(CallTimeout), CallTimeout, allowZero: false);
        check.Timeout(nameof(RegionFullTimeout), RegionFullTimeout, allowZero: true);
        check.Range(nameof(ParkTimeout), ParkTimeout, TimeSpan.FromMilliseconds(1), TimeSpan.FromSeconds(10));
        check.Range(nameof(SpinDuration), SpinDuration, TimeSpan.Zero, TimeSpan.FromSeconds(1));
        check.Defined(nameof(WaitStrategy), WaitStrategy);
        check.RegionSize(nameof(MaxPeerRegionSize), MaxPeerRegionSize);
        check.Range(nameof(MaxHandshakesPerUid), MaxHandshakesPerUid, 1, Transport.PageRangeListener.MaxConcurrentHandshakes);
        check.Range(nameof(MaxHandshakesPerProcess), MaxHandshakesPerProcess, 1, Transport.PageRangeListener.MaxConcurrentHandshakes);
        if (errors.Count == before)
        {
            // Each setting is within its own rules; together the region must also fit its rings, or every connection
            // would fail (a client would retry for ever): reported here, at start-up, as the others are.
            var combined = new PageRangeOptions();
            ApplyTo(combined);
            try
            {
                combined.Validate();
            }
            catch (ArgumentException error)
            {
                errors.Add($"{prefix}{error.Message.Split(" (Parameter", 2)[0]}");
            }
        }
    }

    /// <summary>Sets what is set here on <paramref name="options"/>; what is null keeps its value there.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value breaks <see cref="PageRangeOptions"/>' rules (not validated first).</exception>
    internal void ApplyTo(PageRangeOptions options)
    {
        if (RegionSize is { } regionSize)
        {
            options.RegionSize = regionSize;
        }
        if (TransactionRingCapacity is { } transactionRing)
        {
            options.TransactionRingCapacity = transactionRing;
        }
        if (FreeRingCapacity is { } freeRing)
        {
            options.FreeRingCapacity = freeRing;
        }
        if (ReceiveThreads is { } receiveThreads)
        {
            options.ReceiveThreads = receiveThreads;
        }
        if (MaxConcurrentCalls is { } maxConcurrentCalls)
        {
            options.MaxConcurrentCalls = maxConcurrentCalls;
        }
        if (MaxCallDepth is { } maxCallDepth)
        {
            options.MaxCallDepth = maxCallDepth;
        }
        if (ConnectTimeout is { } connectTimeout)
        {
            options.ConnectTimeout = connectTimeout;
        }
        if (HelloTimeout is { } helloTimeout)
        {
            options.HelloTimeout = helloTimeout;
        }
        if (CallTimeout is { } callTimeout)
        {
            options.CallTimeout = callTimeout;
        }
        if (RegionFullTimeout is { } regionFullTimeout)
        {
            options.RegionFullTimeout = regionFullTimeout;
        }
        if (ParkTimeout is { } parkTimeout)
        {
            options.ParkTimeout = parkTimeout;
        }
        if (SpinDuration is { } spinDuration)
        {
            options.SpinDuration = spinDuration;
        }
        if (WaitStrategy is { } waitStrategy)
        {
            options.WaitStrategy = waitStrategy;
        }
        if (MaxPeerRegionSize is { } maxPeerRegionSize)
        {
            options.MaxPeerRegionSize = maxPeerRegionSize;
        }
        if (MaxHandshakesPerUid is { } maxHandshakesPerUid)
        {
            options.MaxHandshakesPerUid = maxHandshakesPerUid;
        }
        if (MaxHandshakesPerProcess is { } maxHandshakesPerProcess)
        {
            options.MaxHandshakesPerProcess = maxHandshakesPerProcess;
        }
        if (AllowAnyUid is { } allowAnyUid)
        {
            options.AllowAnyUid = allowAnyUid;
        }
        foreach (uint uid in AllowedUids)
        {
            options.AllowedUids.Add(uid);
        }
    }
}

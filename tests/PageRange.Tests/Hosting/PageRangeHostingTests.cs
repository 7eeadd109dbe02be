using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using PageRange.Diagnostics;
using PageRange.Hosting;
using PageRange.Server;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Server;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Hosting;

/// <summary>Hosted servers and clients in one generic host: start, calls, graceful stop, options and logging.</summary>
[SuppressMessage("Trimming", "IL2026", Justification = "Tests run on the JIT.")]
[SuppressMessage("AOT", "IL3050", Justification = "Tests run on the JIT.")]
public sealed class PageRangeHostingTests
{
    private const uint Echo = 1;
    private const uint Add = 2;
    private const uint Note = 3;

    [Fact]
    public async Task AddPageRangeServer_HostStarted_ClientCallsRawTypedAndOneway()
    {
        string name = ControlHandshakeTests.UniqueName();
        var notes = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        using IHost host = HostingTestHost.Build(services => services
            .AddPageRangeServer(name, HostingTestHost.Small, server => server
                .Map(Echo, (Transaction tx, CallContext _) => tx.Reply(tx.Payload))
                .Map<AddRequest, AddResponse>(Add, (request, _) => new AddResponse(request.A + request.B))
                .MapOneway<Tests.Server.Note>(Note, (note, _) => notes.TrySetResult(note.Seq)))
            .AddPageRangeClient(name));
        await host.StartAsync().WaitAsync(TestTimeouts.Long);

        PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);
        Assert.Same(client, host.Services.GetRequiredService<IPageRangeClientFactory>().GetClient(name));
        Assert.False(client.IsConnected);
        using (Transaction reply = await client.CallAsync(Echo, new byte[] { 1, 2, 3 }).AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(new byte[] { 1, 2, 3 }, reply.Payload.ToArray());
        }
        Assert.True(client.IsConnected);
        using (Transaction reply = client.Call(Echo, [9]))
        {
            Assert.Equal(new byte[] { 9 }, reply.Payload.ToArray());
        }
        AddResponse sum = await client.CallAsync<AddRequest, AddResponse>(new AddRequest(40, 2), Add).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(42, sum.Sum);
        Assert.Equal(7, client.Call<AddRequest, AddResponse>(new AddRequest(3, 4), Add).Sum);
        client.SendOneway(new Tests.Server.Note(5), Note);
        Assert.Equal(5, await notes.Task.WaitAsync(TestTimeouts.Long));

        PageRangeHostedServer hosted = host.Services.GetRequiredKeyedService<PageRangeHostedServer>(name);
        Assert.NotNull(hosted.Server);
        Assert.Equal(1, hosted.Server.ClientCount);
        await host.StopAsync().WaitAsync(TestTimeouts.Long);
        Assert.Null(hosted.Server);
        // Stopped with the host: nobody listens on the name any more.
        await Assert.ThrowsAsync<PageRangeException>(() => PageRangeConnection.ConnectAsync(name).AsTask().WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task AddPageRangeServer_TwoNames_BothServeTheirOwnHandlers()
    {
        string first = ControlHandshakeTests.UniqueName();
        string second = ControlHandshakeTests.UniqueName();
        using IHost host = HostingTestHost.Build(services => services
            .AddPageRangeServer(first, HostingTestHost.Small, server => server.Map(Echo, (Transaction tx, CallContext _) => tx.Reply([1])))
            .AddPageRangeServer(second, HostingTestHost.Small, server => server.Map(Echo, (Transaction tx, CallContext _) => tx.Reply([2])))
            .AddPageRangeClient(first)
            .AddPageRangeClient("other", options => options.ServerName = second));
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        try
        {
            IPageRangeClientFactory factory = host.Services.GetRequiredService<IPageRangeClientFactory>();
            using Transaction one = await factory.GetClient(first).CallAsync(Echo, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long);
            using Transaction two = await factory.GetClient("other").CallAsync(Echo, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long);
            Assert.Equal(1, one.Payload[0]);
            Assert.Equal(2, two.Payload[0]);
            Assert.Equal(second, factory.GetClient("other").ServerName);
            Assert.Throws<InvalidOperationException>(() => factory.GetClient("nobody"));
        }
        finally
        {
            await host.StopAsync().WaitAsync(TestTimeouts.Long);
        }
    }

    [Fact]
    public void AddPageRangeServerOrClient_SameNameTwice_Throws()
    {
        var services = new ServiceCollection();
        services.AddPageRangeServer("twice", _ => { });
        services.AddPageRangeClient("twice");
        Assert.Throws<ArgumentException>(() => services.AddPageRangeServer("twice", _ => { }));
        Assert.Throws<ArgumentException>(() => services.AddPageRangeClient("twice"));
        Assert.Throws<ArgumentException>(() => services.AddPageRangeServer("", _ => { }));
    }

    [Fact]
    public async Task HostStop_CallInFlight_FinishesWithinTheShutdownTimeout()
    {
        string name = ControlHandshakeTests.UniqueName();
        var handlerStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using IHost host = HostingTestHost.Build(services => services
            .AddPageRangeServer(name, HostingTestHost.Small, server => server.Map(Echo, async (Transaction tx, CallContext _) =>
            {
                handlerStarted.TrySetResult();
                await release.Task.WaitAsync(TestTimeouts.Long);
                tx.Reply(tx.Payload);
            }))
            .AddPageRangeClient(name), shutdownTimeout: TestTimeouts.Long);
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);
        PageRangeHostedServer hosted = host.Services.GetRequiredKeyedService<PageRangeHostedServer>(name);

        Task<Transaction> call = client.CallAsync(Echo, new byte[] { 4, 5, 6 }).AsTask();
        await handlerStarted.Task.WaitAsync(TestTimeouts.Long);
        Task stop = host.StopAsync();
        await HostingTestHost.WaitUntilAsync(() => hosted.Server is null, "the hosted server to begin stopping");

        // The stop waits for the call: it cannot finish before the handler is released.
        Assert.False(stop.IsCompleted);
        release.SetResult();
        using Transaction reply = await call.WaitAsync(TestTimeouts.Long);
        Assert.Equal(new byte[] { 4, 5, 6 }, reply.Payload.ToArray());
        await stop.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task HostStop_ShutdownTimeoutExpires_CallInFlightIsCancelled()
    {
        string name = ControlHandshakeTests.UniqueName();
        var handlerStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using IHost host = HostingTestHost.Build(services => services
            .AddPageRangeServer(name, HostingTestHost.Small, server => server.Map(Echo, async (Transaction tx, CallContext context) =>
            {
                handlerStarted.TrySetResult();
                try
                {
                    await Task.Delay(TestTimeouts.Long, context.CancellationToken);
                }
                catch (OperationCanceledException)
                {
                    handlerCancelled.TrySetResult();
                    throw;
                }
                tx.Reply(tx.Payload);
            }))
            .AddPageRangeClient(name), shutdownTimeout: TimeSpan.FromMilliseconds(300));
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);

        Task<Transaction> call = client.CallAsync(Echo, new byte[] { 1 }).AsTask();
        await handlerStarted.Task.WaitAsync(TestTimeouts.Long);
        await host.StopAsync().WaitAsync(TestTimeouts.Long);

        await handlerCancelled.Task.WaitAsync(TestTimeouts.Long);
        // Cancelled by the server (RemoteCallException, Cancelled) or closed with it (ServerUnavailableException): never a hang.
        PageRangeException error = await Assert.ThrowsAnyAsync<PageRangeException>(() => call.WaitAsync(TestTimeouts.Long));
        Assert.True(error is RemoteCallException { Status: CallStatus.Cancelled } or ServerUnavailableException, error.ToString());
    }

    [Fact]
    public async Task ServerOptions_MaxThreadsZero_StartFailsNamingTheSetting()
    {
        string name = ControlHandshakeTests.UniqueName();
        using IHost host = HostingTestHost.Build(services => services
            .AddPageRangeServer(name, options => options.MaxThreads = 0, server => server.Map(Echo, (Transaction tx, CallContext _) => tx.Reply([]))));

        OptionsValidationException error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync().WaitAsync(TestTimeouts.Long));
        Assert.Contains($"PageRange server '{name}': MaxThreads (0) must be between 1 and 1024.", error.Message, StringComparison.Ordinal);
        Assert.Null(host.Services.GetRequiredKeyedService<PageRangeHostedServer>(name).Server);
        await Assert.ThrowsAsync<PageRangeException>(() => PageRangeConnection.ConnectAsync(name).AsTask().WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task ServerOptions_CallLimitsOutOfRange_StartFailsNamingEach()
    {
        string name = ControlHandshakeTests.UniqueName();
        using IHost host = HostingTestHost.Build(services => services
            .AddPageRangeServer(name, options =>
            {
                options.MaxConcurrentCallsPerClient = 0;
                options.MaxQueuedCallsPerClient = -1;
            }, server => server.Map(Echo, (Transaction tx, CallContext _) => tx.Reply([]))));

        OptionsValidationException error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync().WaitAsync(TestTimeouts.Long));
        Assert.Contains($"PageRange server '{name}': MaxConcurrentCallsPerClient (0) must be between 1 and 65535.", error.Message, StringComparison.Ordinal);
        Assert.Contains($"PageRange server '{name}': MaxQueuedCallsPerClient (-1) must be between 0 and 65535.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ServerOptions_CallLimits_ReachTheServer()
    {
        var settings = new PageRangeHostedServerOptions { MaxConcurrentCallsPerClient = 8, MaxQueuedCallsPerClient = 0 };
        Assert.Empty(settings.Validate("calc"));
        PageRangeServerOptions options = settings.CreateServerOptions(loggerFactory: null);
        Assert.Equal(8, options.MaxConcurrentCallsPerClient);
        Assert.Equal(0, options.MaxQueuedCallsPerClient);
    }

    [Fact]
    public async Task ServerOptions_BadValuesInConfiguration_StartFailsNamingEachSetting()
    {
        string name = ControlHandshakeTests.UniqueName();
        IConfiguration configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["MinThreads"] = "8",
            ["MaxThreads"] = "2",
            ["ConnectionOptions:RegionSize"] = "100000",
            ["ConnectionOptions:TransactionRingCapacity"] = "100",
            ["ConnectionOptions:CallTimeout"] = "00:00:00",
            ["ConnectionOptions:MaxHandshakesPerUid"] = "0",
            ["ConnectionOptions:MaxHandshakesPerProcess"] = "65",
            ["ReplyRoomTimeout"] = "00:00:00",
        }).Build();
        using IHost host = HostingTestHost.Build(services => services.AddPageRangeServer(name, configuration, _ => { }));

        OptionsValidationException error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync().WaitAsync(TestTimeouts.Long));
        string prefix = $"PageRange server '{name}': ";
        Assert.Contains($"{prefix}MinThreads (8) must not be more than MaxThreads (2).", error.Failures);
        Assert.Contains(error.Failures, failure => failure.StartsWith($"{prefix}ConnectionOptions.RegionSize (100000) must be a multiple of the page size", StringComparison.Ordinal));
        Assert.Contains($"{prefix}ConnectionOptions.TransactionRingCapacity (100) must be a power of two between 16 and 65536.", error.Failures);
        Assert.Contains(error.Failures, failure => failure.StartsWith($"{prefix}ConnectionOptions.CallTimeout (00:00:00) must be positive", StringComparison.Ordinal));
        Assert.Contains($"{prefix}ConnectionOptions.MaxHandshakesPerUid (0) must be between 1 and 64.", error.Failures);
        Assert.Contains($"{prefix}ConnectionOptions.MaxHandshakesPerProcess (65) must be between 1 and 64.", error.Failures);
        Assert.Contains(error.Failures, failure => failure.StartsWith($"{prefix}ReplyRoomTimeout (00:00:00)", StringComparison.Ordinal));
        Assert.Equal(7, error.Failures.Count());
    }

    [Fact]
    public async Task ServerAndClientOptions_RegionTooSmallForItsRings_StartFailsNamingIt()
    {
        // Each setting is within its own rules (64 KiB, the default rings); together they leave no data page.
        string name = ControlHandshakeTests.UniqueName();
        using IHost server = HostingTestHost.Build(services => services.AddPageRangeServer(
            name, options => options.ConnectionOptions.RegionSize = PageRangeOptions.MinRegionSize, _ => { }));
        using IHost client = HostingTestHost.Build(services => services.AddPageRangeClient(
            "small", options => options.ConnectionOptions.RegionSize = PageRangeOptions.MinRegionSize));

        OptionsValidationException serverError = await Assert.ThrowsAsync<OptionsValidationException>(() => server.StartAsync().WaitAsync(TestTimeouts.Long));
        OptionsValidationException clientError = await Assert.ThrowsAsync<OptionsValidationException>(() => client.StartAsync().WaitAsync(TestTimeouts.Long));

        string expected = $"ConnectionOptions.RegionSize ({PageRangeOptions.MinRegionSize} bytes) leaves no data page after the";
        Assert.StartsWith($"PageRange server '{name}': {expected}", Assert.Single(serverError.Failures), StringComparison.Ordinal);
        Assert.StartsWith($"PageRange client 'small': {expected}", Assert.Single(clientError.Failures), StringComparison.Ordinal);
        Assert.DoesNotContain("(Parameter", Assert.Single(clientError.Failures), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServerOptions_CallbackSetsABadValue_StartFailsNamingTheServer()
    {
        string name = ControlHandshakeTests.UniqueName();
        using IHost host = HostingTestHost.Build(services => services.AddPageRangeServer(
            name, options => options.ConfigureServerOptions = server => server.MaxClients = 0, _ => { }));

        OptionsValidationException error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync().WaitAsync(TestTimeouts.Long));
        Assert.StartsWith($"PageRange server '{name}': the server options were refused (ConfigureServerOptions?)", Assert.Single(error.Failures), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ClientOptions_BadBackoff_StartFailsNamingTheSettings()
    {
        using IHost host = HostingTestHost.Build(services => services.AddPageRangeClient("backoff", options =>
        {
            options.ReconnectJitter = 2;
            options.ReconnectDelay = TimeSpan.FromSeconds(5);
            options.MaxReconnectDelay = TimeSpan.FromSeconds(1);
            options.HealthyConnectionTime = TimeSpan.FromSeconds(-1);
            options.ConnectionOptions.ReceiveThreads = 0;
        }));

        OptionsValidationException error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync().WaitAsync(TestTimeouts.Long));
        Assert.Contains("PageRange client 'backoff': ReconnectJitter (2) must be between 0 and 1.", error.Failures);
        Assert.Contains("PageRange client 'backoff': MaxReconnectDelay (00:00:01) must not be less than ReconnectDelay (00:00:05).", error.Failures);
        Assert.Contains("PageRange client 'backoff': HealthyConnectionTime (-00:00:01) must be between 00:00:00 and 01:00:00.", error.Failures);
        Assert.Contains("PageRange client 'backoff': ConnectionOptions.ReceiveThreads (0) must be between 1 and 256.", error.Failures);
    }

    [Fact]
    public async Task ClientOptions_NameNoServerCanHave_StartFailsNamingIt()
    {
        // A name no listener can have was taken for an unreachable server and retried for ever.
        using (IHost host = HostingTestHost.Build(services => services.AddPageRangeClient("nul", options => options.ServerName = "a\0b")))
        {
            OptionsValidationException error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync().WaitAsync(TestTimeouts.Long));
            Assert.Equal("PageRange client 'nul': ServerName 'a\\0b' cannot be a server's name: A PageRange name cannot contain a NUL character. (Parameter 'name')",
                Assert.Single(error.Failures));
        }
        string tooLong = new('n', 98);
        using (IHost host = HostingTestHost.Build(services => services.AddPageRangeClient(tooLong)))
        {
            OptionsValidationException error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync().WaitAsync(TestTimeouts.Long));
            Assert.Equal($"PageRange client '{tooLong}': its name (also its server's) '{tooLong}' cannot be a server's name: A PageRange name is at most 97 bytes of UTF-8. (Parameter 'name')",
                Assert.Single(error.Failures));
        }
    }

    [Fact]
    public async Task ServerOptions_FromConfiguration_AreApplied()
    {
        string name = ControlHandshakeTests.UniqueName();
        IConfiguration configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["MaxThreads"] = "2",
            ["StartShrinkerMonitor"] = "false",
            ["ConnectionOptions:RegionSize"] = "262144",
            ["ConnectionOptions:WaitStrategy"] = "Park",
        }).Build();
        using IHost host = HostingTestHost.Build(services => services
            .AddPageRangeServer(name, configuration, server => server.Map(Echo, (Transaction tx, CallContext _) => tx.Reply([])))
            .AddPageRangeClient(name));
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        try
        {
            PageRangeConnection connection = await host.Services.GetRequiredKeyedService<PageRangeClient>(name)
                .GetConnectionAsync().AsTask().WaitAsync(TestTimeouts.Long);
            // The server's region is the one the client writes into: 256 KiB, not the 4 MiB default.
            Assert.InRange(connection.MaxMessageSize, 1, 262144);
        }
        finally
        {
            await host.StopAsync().WaitAsync(TestTimeouts.Long);
        }
    }

    [Fact]
    public async Task HostLoggerFactory_LogsTheHostingEventsWithTheirIds()
    {
        string name = ControlHandshakeTests.UniqueName();
        using var logs = new LogCapture();
        using IHost host = HostingTestHost.Build(services => services
            .AddPageRangeServer(name, HostingTestHost.Small, server => server.Map(Echo, (Transaction tx, CallContext _) => tx.Reply([])))
            .AddPageRangeClient(name), logs);
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);
        using (await client.CallAsync(Echo, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long))
        {
        }
        await host.StopAsync().WaitAsync(TestTimeouts.Long);
        // The client sees the server stop: it logs the loss (early: the connection lasted less than HealthyConnectionTime,
        // so it counts as a failed attempt), then, used again once that backoff is over, a failed attempt.
        ServerUnavailableException lost = await Assert.ThrowsAsync<ServerUnavailableException>(() => client.CallAsync(Echo, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));
        TimeSpan backoff = lost.RetryAt - DateTimeOffset.UtcNow;
        await Task.Delay((backoff > TimeSpan.Zero ? backoff : TimeSpan.Zero) + TimeSpan.FromMilliseconds(50));
        await Assert.ThrowsAsync<ServerUnavailableException>(() => client.CallAsync(Echo, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));

        Assert.Contains($"'{name}'", Assert.Single(logs.WithId(PageRangeHostingLogEvents.ServerStarted)).Message, StringComparison.Ordinal);
        Assert.Single(logs.WithId(PageRangeHostingLogEvents.ServerStopping));
        Assert.Single(logs.WithId(PageRangeHostingLogEvents.ServerStopped));
        Assert.Single(logs.WithId(PageRangeHostingLogEvents.ClientConnected));
        await HostingTestHost.WaitUntilAsync(() => logs.WithId(PageRangeHostingLogEvents.ClientConnectionLostEarly).Length == 1, "the client to log the lost connection");
        Assert.Empty(logs.WithId(PageRangeHostingLogEvents.ClientConnectionLost));
        Assert.NotEmpty(logs.WithId(PageRangeHostingLogEvents.ClientConnectFailed));
        Assert.All(logs.Entries.Where(entry => entry.EventId.Id is >= 400 and < 500), entry => Assert.Equal(PageRangeHostingLogEvents.Category, entry.Category));
    }

    [Fact]
    public void ServerOptions_LoggerFactory_IsTheHostsUnlessTheCallbackSetsOne()
    {
        using var hostLogs = new LogCapture();
        using var ownLogs = new LogCapture();
        var settings = new PageRangeHostedServerOptions();
        PageRangeServerOptions flowed = settings.CreateServerOptions(hostLogs.Factory);
        Assert.Same(hostLogs.Factory, flowed.ConnectionOptions.LoggerFactory);
        Assert.Same(hostLogs.Factory, flowed.ShrinkerOptions?.LoggerFactory);

        settings.ConfigureServerOptions = server => server.ConnectionOptions.LoggerFactory = ownLogs.Factory;
        Assert.Same(ownLogs.Factory, settings.CreateServerOptions(hostLogs.Factory).ConnectionOptions.LoggerFactory);

        var client = new PageRangeClientOptions();
        Assert.Same(hostLogs.Factory, client.CreateConnectionOptions(hostLogs.Factory).LoggerFactory);
        client.ConfigureConnectionOptions = connection => connection.LoggerFactory = ownLogs.Factory;
        Assert.Same(ownLogs.Factory, client.CreateConnectionOptions(hostLogs.Factory).LoggerFactory);
    }

    [Fact]
    public void ServerOptions_Settings_AreAppliedToTheLibraryOptions()
    {
        var settings = new PageRangeHostedServerOptions
        {
            MinThreads = 6, MaxThreads = 8, MaxClients = 3, IncludeExceptionDetails = true, ReplyRoomTimeout = TimeSpan.FromSeconds(2),
            RunFastHandlersInline = false,
        };
        settings.ConnectionOptions.RegionSize = 1L << 20;
        settings.ConnectionOptions.CallTimeout = TimeSpan.FromSeconds(3);
        settings.ConnectionOptions.AllowedUids.Add(1234);
        settings.ConnectionOptions.MaxHandshakesPerUid = 8;
        settings.ConnectionOptions.MaxHandshakesPerProcess = 2;
        PageRangeServerOptions options = settings.CreateServerOptions(loggerFactory: null);
        Assert.Equal((6, 8, 3, true), (options.MinThreads, options.MaxThreads, options.MaxClients, options.IncludeExceptionDetails));
        Assert.Equal(TimeSpan.FromSeconds(2), options.ReplyRoomTimeout);
        Assert.False(options.RunFastHandlersInline);
        Assert.True(new PageRangeHostedServerOptions().CreateServerOptions(loggerFactory: null).RunFastHandlersInline);
        Assert.Equal(1L << 20, options.ConnectionOptions.RegionSize);
        Assert.Equal(TimeSpan.FromSeconds(3), options.ConnectionOptions.CallTimeout);
        Assert.Contains(1234u, options.ConnectionOptions.AllowedUids);
        Assert.Equal((8, 2), (options.ConnectionOptions.MaxHandshakesPerUid, options.ConnectionOptions.MaxHandshakesPerProcess));
        // Unset settings keep the library's defaults.
        Assert.Equal(new PageRangeServerOptions().MaxClientsPerUid, options.MaxClientsPerUid);
        Assert.Equal(new PageRangeOptions().ReceiveThreads, options.ConnectionOptions.ReceiveThreads);
        PageRangeOptions unset = new PageRangeHostedServerOptions().CreateServerOptions(loggerFactory: null).ConnectionOptions;
        Assert.Equal((new PageRangeOptions().MaxHandshakesPerUid, new PageRangeOptions().MaxHandshakesPerProcess), (unset.MaxHandshakesPerUid, unset.MaxHandshakesPerProcess));
    }

    [Fact]
    public void Configuration_BindsEveryKindOfSetting()
    {
        IConfiguration configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Servers:calc:ListenName"] = "calc-v2",
            ["Servers:calc:MaxThreads"] = "3",
            ["Servers:calc:IdleThreadTimeout"] = "00:00:02",
            ["Servers:calc:IncludeExceptionDetails"] = "true",
            ["Servers:calc:RunFastHandlersInline"] = "false",
            ["Servers:calc:ConnectionOptions:RegionSize"] = "262144",
            ["Servers:calc:ConnectionOptions:WaitStrategy"] = "Park",
            ["Servers:calc:ConnectionOptions:MaxHandshakesPerProcess"] = "4",
            ["Servers:calc:ConnectionOptions:AllowedUids:0"] = "1234",
            ["Servers:calc:ConnectionOptions:AllowedUids:1"] = "5678",
            ["Clients:calc:ServerName"] = "calc-v2",
            ["Clients:calc:ReconnectDelay"] = "00:00:00.250",
            ["Clients:calc:ReconnectJitter"] = "0.5",
            ["Clients:calc:ConnectionOptions:CallTimeout"] = "00:00:07",
        }).Build();
        var services = new ServiceCollection();
        services.AddPageRangeServer("calc", configuration.GetSection("Servers:calc"), _ => { });
        services.AddPageRangeClient("calc", configuration.GetSection("Clients:calc"));
        using ServiceProvider provider = services.BuildServiceProvider();

        PageRangeHostedServerOptions server = provider.GetRequiredService<IOptionsMonitor<PageRangeHostedServerOptions>>().Get("calc");
        Assert.Equal(("calc-v2", 3, TimeSpan.FromSeconds(2), true), (server.ListenName, server.MaxThreads, server.IdleThreadTimeout, server.IncludeExceptionDetails));
        Assert.False(server.RunFastHandlersInline);
        Assert.Equal((262144L, WaitStrategy.Park), (server.ConnectionOptions.RegionSize, server.ConnectionOptions.WaitStrategy));
        Assert.Equal([1234u, 5678u], server.ConnectionOptions.AllowedUids);
        Assert.Equal(4, server.ConnectionOptions.MaxHandshakesPerProcess);
        Assert.Null(server.ConnectionOptions.MaxHandshakesPerUid);
        Assert.Null(server.MinThreads);

        PageRangeClientOptions client = provider.GetRequiredService<IOptionsMonitor<PageRangeClientOptions>>().Get("calc");
        Assert.Equal(("calc-v2", TimeSpan.FromMilliseconds(250), 0.5), (client.ServerName, client.ReconnectDelay, client.ReconnectJitter));
        Assert.Equal(TimeSpan.FromSeconds(7), client.ConnectionOptions.CallTimeout);
        Assert.Equal("calc-v2", provider.GetRequiredKeyedService<PageRangeClient>("calc").ServerName);
    }

    [Fact]
    public void Configuration_UnparsableValue_FailsNamingThePath()
    {
        IConfiguration configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["MaxThreads"] = "many",
        }).Build();
        var services = new ServiceCollection();
        services.AddPageRangeServer("calc", configuration, _ => { });
        using ServiceProvider provider = services.BuildServiceProvider();
        InvalidOperationException error = Assert.Throws<InvalidOperationException>(
            () => provider.GetRequiredService<IOptionsMonitor<PageRangeHostedServerOptions>>().Get("calc"));
        Assert.Contains("MaxThreads", error.Message, StringComparison.Ordinal);
    }
}

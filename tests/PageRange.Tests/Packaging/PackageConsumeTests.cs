using System.Diagnostics;
using System.IO.Compression;
using System.Reflection;
using System.Runtime.Versioning;
using System.Xml.Linq;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Packaging;

/// <summary>
/// The <c>PageRange</c> package as a user gets it: packed from this build into a temporary feed, then a small consumer
/// project that knows nothing of this repository restores it from that feed (plus the machine's usual feed), builds
/// with warnings as errors and runs a typed call between two connections. Nothing reaches the global package cache:
/// the consumer restores into a temporary folder, reading the global cache only as a read-only fallback.
/// </summary>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Pack")]
public sealed class PackageConsumeTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan s_stepTimeout = TimeSpan.FromMinutes(5);

    private readonly string _directory = Directory.CreateTempSubdirectory("pagerange-pack-").FullName;

    // A version no cache can already hold, so the consumer can only have restored what this test packed.
    private readonly string _version = $"0.0.0-packtest.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void Assembly_IsMarkedLinuxOnly()
    {
        SupportedOSPlatformAttribute platform = Assert.Single(typeof(PageRangeConnection).Assembly.GetCustomAttributes<SupportedOSPlatformAttribute>());
        Assert.Equal("linux", platform.PlatformName);
    }

    [Fact]
    public void Pack_ThenConsumeFromTheFeed_BuildsAndRunsATypedCall()
    {
        string feed = Path.Combine(_directory, "feed");
        Run(Path.Combine(RepositoryPaths.Root, "src", "PageRange"),
            "pack", "-c", Configuration, "--no-build", "-o", feed, $"-p:Version={_version}", "--disable-build-servers", "-nodeReuse:false");

        string package = Path.Combine(feed, $"PageRange.{_version}.nupkg");
        string symbols = Path.Combine(feed, $"PageRange.{_version}.snupkg");
        Assert.True(File.Exists(package), $"no {package}");
        Assert.True(File.Exists(symbols), $"no {symbols}");
        CheckPackage(package, symbols);

        string consumer = WriteConsumer(feed);
        Run(consumer, "build", "-c", "Release", "--disable-build-servers", "-nodeReuse:false", "-p:UseSharedCompilation=false");
        (string stdout, _) = Run(consumer, Path.Combine("bin", "Release", "net10.0", "Consumer.dll"));

        Assert.Equal("consumer: pong 42", stdout.Trim());
        // The consumer's restore went to its own folder, and took this test's package from the feed.
        Assert.True(Directory.Exists(Path.Combine(_directory, "packages", "pagerange", _version)), "PageRange was not restored into the temporary packages folder");
    }

    [Fact]
    public void PackBoth_ThenConsumeHosting_ServesAndCallsInOneHost()
    {
        string feed = Path.Combine(_directory, "feed");
        foreach (string project in new[] { "PageRange", "PageRange.Hosting" })
        {
            Run(Path.Combine(RepositoryPaths.Root, "src", project),
                "pack", "-c", Configuration, "--no-build", "-o", feed, $"-p:Version={_version}", "--disable-build-servers", "-nodeReuse:false");
            Assert.True(File.Exists(Path.Combine(feed, $"{project}.{_version}.nupkg")), $"no {project} package");
            Assert.True(File.Exists(Path.Combine(feed, $"{project}.{_version}.snupkg")), $"no {project} symbols");
        }

        string consumer = WriteHostingConsumer(feed);
        Run(consumer, "build", "-c", "Release", "--disable-build-servers", "-nodeReuse:false", "-p:UseSharedCompilation=false");
        (string stdout, _) = Run(consumer, Path.Combine("bin", "Release", "net10.0", "Consumer.dll"));

        // The host's console logger writes its start and stop lines around ours.
        Assert.Contains("consumer: hosted pong 42", stdout.Split('\n').Select(line => line.Trim()));
        Assert.True(Directory.Exists(Path.Combine(_directory, "packages", "pagerange.hosting", _version)), "PageRange.Hosting was not restored from the feed");
    }

    [Fact]
    public async Task PackTool_InstalledIntoAToolPath_PagerangeListFindsOurListener()
    {
        string feed = Path.Combine(_directory, "feed");
        string tools = Path.Combine(_directory, "tools");
        Run(Path.Combine(RepositoryPaths.Root, "tools", "PageRange.Cli"),
            "pack", "-c", Configuration, "--no-build", "-o", feed, $"-p:Version={_version}", "--disable-build-servers", "-nodeReuse:false");
        WriteNuGetConfig(feed);
        // From the temporary folder, so its nuget.config (this feed, the temporary packages folder) is the one read.
        Run(_directory, "tool", "install", "PageRange.Cli", "--version", _version, "--tool-path", tools);

        string name = $"pack-tool-{Environment.ProcessId}";
        await using PageRange.Transport.PageRangeListener listener = PageRange.Transport.PageRangeListener.Listen(name);
        (string stdout, _) = RunProgram(_directory, Path.Combine(tools, "pagerange"), "list", "--json");

        using var document = System.Text.Json.JsonDocument.Parse(stdout);
        System.Text.Json.JsonElement ours = Assert.Single(document.RootElement.EnumerateArray(), e => e.GetProperty("name").GetString() == name);
        Assert.Equal(Environment.ProcessId, ours.GetProperty("pid").GetInt32());
    }

    private static void CheckPackage(string package, string symbols)
    {
        using (ZipArchive zip = ZipFile.OpenRead(package))
        {
            string[] entries = [.. zip.Entries.Select(entry => entry.FullName)];
            Assert.Contains("lib/net10.0/PageRange.dll", entries);
            Assert.Contains("lib/net10.0/PageRange.xml", entries);
            Assert.Contains("README.md", entries);

            ZipArchiveEntry nuspecEntry = zip.GetEntry("PageRange.nuspec") ?? throw new InvalidOperationException("no nuspec");
            using Stream nuspecStream = nuspecEntry.Open();
            XElement metadata = XDocument.Load(nuspecStream).Root!.Elements().Single(e => e.Name.LocalName == "metadata");
            string? Value(string name) => metadata.Elements().SingleOrDefault(e => e.Name.LocalName == name)?.Value;
            XElement Element(string name) => metadata.Elements().Single(e => e.Name.LocalName == name);

            Assert.Equal("PageRange", Value("id"));
            Assert.Equal("MIT", Value("license"));
            Assert.Equal("expression", Element("license").Attribute("type")?.Value);
            Assert.Equal("README.md", Value("readme"));
            Assert.False(string.IsNullOrWhiteSpace(Value("description")));
            Assert.False(string.IsNullOrWhiteSpace(Value("authors")));
            Assert.StartsWith("https://", Value("projectUrl"), StringComparison.Ordinal);
            Assert.StartsWith("https://", Element("repository").Attribute("url")?.Value, StringComparison.Ordinal);
            string[] dependencies = [.. Element("dependencies").Descendants().Where(e => e.Name.LocalName == "dependency").Select(e => e.Attribute("id")!.Value)];
            // What the library references; central transitive pinning may also list a pinned transitive package
            // (Logging.Abstractions brings DependencyInjection.Abstractions), which is a dependency either way.
            Assert.Subset(
                new HashSet<string>(["MessagePack", "Microsoft.Extensions.Logging.Abstractions", "Microsoft.Extensions.DependencyInjection.Abstractions"]),
                new HashSet<string>(dependencies));
            Assert.Contains("MessagePack", dependencies);
            Assert.Contains("Microsoft.Extensions.Logging.Abstractions", dependencies);
        }
        using (ZipArchive zip = ZipFile.OpenRead(symbols))
        {
            Assert.Contains("lib/net10.0/PageRange.pdb", zip.Entries.Select(entry => entry.FullName));
        }
    }

    /// <summary>
    /// A nuget.config in the temporary folder: this test's feed and packages folder. Only the feed is added: the usual
    /// feed comes from the machine's own NuGet configuration. The global cache is a read-only fallback, so what it
    /// already holds is not downloaded again and nothing is added to it.
    /// </summary>
    private void WriteNuGetConfig(string feed)
    {
        string fallback = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } configured
            ? configured
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string fallbackFolders = Directory.Exists(fallback)
            ? $"""<fallbackPackageFolders><add key="global-cache" value="{fallback}" /></fallbackPackageFolders>"""
            : "";
        File.WriteAllText(Path.Combine(_directory, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config><add key="globalPackagesFolder" value="{Path.Combine(_directory, "packages")}" /></config>
              <packageSources><add key="pagerange-test-feed" value="{feed}" /></packageSources>
              {fallbackFolders}
            </configuration>
            """);
    }

    /// <summary>A console project outside the repository (no Directory.Build.props or central versions reach it).</summary>
    private string WriteConsumer(string feed)
    {
        string consumer = Path.Combine(_directory, "consumer");
        Directory.CreateDirectory(consumer);
        WriteNuGetConfig(feed);
        File.WriteAllText(Path.Combine(consumer, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                <!-- The audit needs the network's vulnerability data; this test is about the package, not the feed. -->
                <NuGetAudit>false</NuGetAudit>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="PageRange" Version="{_version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(consumer, "Program.cs"), """
            using System.Runtime.Versioning;
            using MessagePack;
            using PageRange;
            using PageRange.Serialization;
            using PageRange.Transport;

            [assembly: SupportedOSPlatform("linux")]

            string name = $"pack-consumer-{Environment.ProcessId}";
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await using PageRangeListener listener = PageRangeListener.Listen(name);
            Task<PageRangeConnection> accepting = listener.AcceptAsync(timeout.Token).AsTask();
            await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, new PageRangeOptions(), timeout.Token);
            await using PageRangeConnection server = await accepting;
            Task serving = Task.Run(() =>
            {
                using Transaction call = server.Receive(timeout.Token);
                call.Reply(new Pong(call.Deserialize<Ping>().Seq + 1));
            });
            Pong pong = client.Call<Ping, Pong>(new Ping(41));
            await serving;
            Console.WriteLine($"consumer: pong {pong.Seq}");

            [MessagePackObject]
            public sealed record Ping([property: Key(0)] long Seq);

            [MessagePackObject]
            public sealed record Pong([property: Key(0)] long Seq);
            """);
        return consumer;
    }

    /// <summary>A console project outside the repository that runs a hosted server and a hosted client from the packages.</summary>
    private string WriteHostingConsumer(string feed)
    {
        string consumer = Path.Combine(_directory, "consumer-hosting");
        Directory.CreateDirectory(consumer);
        WriteNuGetConfig(feed);
        string hostingVersion = typeof(Microsoft.Extensions.Hosting.Host).Assembly.GetName().Version is { } v ? $"{v.Major}.{v.Minor}.{v.Build}" : "10.0.0";
        File.WriteAllText(Path.Combine(consumer, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                <NuGetAudit>false</NuGetAudit>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="PageRange.Hosting" Version="{_version}" />
                <PackageReference Include="Microsoft.Extensions.Hosting" Version="{hostingVersion}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(consumer, "Program.cs"), """
            using System.Runtime.Versioning;
            using MessagePack;
            using Microsoft.Extensions.DependencyInjection;
            using Microsoft.Extensions.Hosting;
            using PageRange.Hosting;

            [assembly: SupportedOSPlatform("linux")]

            string name = $"pack-hosting-{Environment.ProcessId}";
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            HostApplicationBuilder builder = Host.CreateApplicationBuilder();
            builder.Services.AddPageRangeServer(name, server => server.Map<Ping, Pong>(1, (ping, context) => new Pong(ping.Seq + 1)));
            builder.Services.AddPageRangeClient(name);
            using IHost host = builder.Build();
            await host.StartAsync(timeout.Token);
            PageRangeClient client = host.Services.GetRequiredService<IPageRangeClientFactory>().GetClient(name);
            Pong pong = await client.CallAsync<Ping, Pong>(new Ping(41), code: 1, cancellationToken: timeout.Token);
            await host.StopAsync(timeout.Token);
            Console.WriteLine($"consumer: hosted pong {pong.Seq}");

            [MessagePackObject]
            public sealed record Ping([property: Key(0)] long Seq);

            [MessagePackObject]
            public sealed record Pong([property: Key(0)] long Seq);
            """);
        return consumer;
    }

    private (string Stdout, string Stderr) Run(string workingDirectory, params string[] arguments) =>
        RunProgram(workingDirectory, "dotnet", arguments);

    private (string Stdout, string Stderr) RunProgram(string workingDirectory, string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        // The test host runs under dotnet test, whose MSBuild settings must not steer the child's build.
        foreach (string variable in start.Environment.Keys.Where(key => key.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToArray())
        {
            start.Environment.Remove(variable);
        }
        // A packages folder set for the user (NUGET_PACKAGES) would win over the temporary nuget.config's, and the
        // consumer would restore into it: the folder is the config's fallback instead (WriteNuGetConfig).
        start.Environment.Remove("NUGET_PACKAGES");
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_CLI_UI_LANGUAGE"] = "en";
        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start.");
        try
        {
            Task<string> stdout = process.StandardOutput.ReadToEndAsync();
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            bool exited = process.WaitForExit(s_stepTimeout);
            string command = $"{Path.GetFileName(program)} {string.Join(' ', arguments)}";
            Assert.True(exited, $"{command} did not finish within {s_stepTimeout}.");
            process.WaitForExit();
            string outText = stdout.GetAwaiter().GetResult();
            string errText = stderr.GetAwaiter().GetResult();
            output.WriteLine($"{command}: exit code {process.ExitCode}\n--- stdout\n{outText}--- stderr\n{errText}");
            Assert.True(process.ExitCode == 0, $"{command} exited with {process.ExitCode}:\n{outText}\n{errText}");
            return (outText, errText);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    /// <summary>The configuration this test assembly was built in: the library's build of it is what gets packed.</summary>
    private static string Configuration => new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;
}

using System.Diagnostics;
using System.Globalization;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>The peer, from the host's side: started as this same executable with <c>--peer</c>, commanded over its standard input.</summary>
internal sealed class PeerProcess : IDisposable
{
    /// <summary>The environment variable that tells the peer where to write its connections' state (<c>--dump-state</c>).</summary>
    public const string StateDirectoryVariable = "PAGERANGE_BENCH_STATE_DIR";

    private readonly Process _process;

    private PeerProcess(Process process) => _process = process;

    public int Id => _process.Id;

    /// <summary>Starts the peer; with <paramref name="pinToCpu"/>, under <c>taskset -c</c> so its every thread stays on that core.</summary>
    /// <param name="regionSize">Bytes of each PageRange region.</param>
    /// <param name="specs">The transports to connect.</param>
    /// <param name="pinToCpu">The core to pin the peer to, if any.</param>
    /// <param name="replyDelay">How long the peer waits before each ping-pong reply (<see cref="ReplyDelay"/>).</param>
    /// <param name="stateDirectory">Where the peer writes each PageRange connection's state when it quits (<c>--dump-state</c>), if anywhere.</param>
    public static PeerProcess Start(long regionSize, IEnumerable<string> specs, int? pinToCpu = null, TimeSpan replyDelay = default, string? stateDirectory = null)
    {
        // Under `dotnet run` the process path is the app host; under `dotnet PageRange.Benchmarks.dll` it is dotnet itself.
        string processPath = Environment.ProcessPath ?? "dotnet";
        var start = new ProcessStartInfo(pinToCpu is null ? processPath : "taskset")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
        };
        start.Environment[ReplyDelay.EnvironmentVariable] = ((long)replyDelay.TotalMicroseconds).ToString(CultureInfo.InvariantCulture);
        if (stateDirectory is not null)
        {
            start.Environment[StateDirectoryVariable] = stateDirectory;
        }
        if (pinToCpu is { } cpu)
        {
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add(cpu.ToString(CultureInfo.InvariantCulture));
            start.ArgumentList.Add(processPath);
        }
        if (Path.GetFileNameWithoutExtension(processPath) == "dotnet")
        {
            start.ArgumentList.Add(typeof(PeerProcess).Assembly.Location);
        }
        start.ArgumentList.Add("--peer");
        start.ArgumentList.Add("--region-size");
        start.ArgumentList.Add(regionSize.ToString(CultureInfo.InvariantCulture));
        foreach (string spec in specs)
        {
            start.ArgumentList.Add(spec);
        }
        Process process = Process.Start(start) ?? throw new InvalidOperationException("The peer process could not be started.");
        return new PeerProcess(process);
    }

    /// <summary>Waits for the peer's "connected" line.</summary>
    public async Task WaitConnectedAsync(CancellationToken cancellationToken)
    {
        string? line = await _process.StandardOutput.ReadLineAsync(cancellationToken);
        if (line != "connected")
        {
            throw new InvalidOperationException($"The peer did not connect (it said '{line}', exit code {(_process.HasExited ? _process.ExitCode : -1)}).");
        }
    }

    public Task WaitForExitAsync(CancellationToken cancellationToken) => _process.WaitForExitAsync(cancellationToken);

    /// <summary>Tells the peer to serve transport <paramref name="index"/> until its next stop.</summary>
    public void Serve(int index)
    {
        _process.StandardInput.WriteLine(string.Create(CultureInfo.InvariantCulture, $"serve {index}"));
        _process.StandardInput.Flush();
    }

    /// <summary>The peer's CPU time so far (user + system, to the nanosecond: <see cref="ProcessCpuClock"/>).</summary>
    public TimeSpan CpuTime => ProcessCpuClock.Of(_process.Id);

    public void Quit()
    {
        if (_process.HasExited)
        {
            return;
        }
        _process.StandardInput.WriteLine("quit");
        _process.StandardInput.Flush();
        if (!_process.WaitForExit(TimeSpan.FromSeconds(10)))
        {
            _process.Kill();
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
        }
        _process.Dispose();
    }
}

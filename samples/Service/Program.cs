using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using PageRange;
using PageRange.Server;
using Spectre.Console;

namespace Service;

/// <summary>
/// One server process and N client processes (this executable started again with <c>--role client</c>): the clients
/// call with mixed sizes while a live table shows each one's calls/s and p50/p99. Halfway, one client is killed with
/// SIGKILL; another scribbles over its rings. The server closes just those two and the others go on unaffected.
/// </summary>
internal static class Program
{
    private const string Usage = """
        usage: Service [--clients N] [--duration SECONDS] [--no-faults]
          --clients N         client processes (default 8, at least 3)
          --duration SECONDS  how long the clients call (default 10)
          --no-faults         no SIGKILL and no scribbling client
        """;

    private static async Task<int> Main(string[] args)
    {
        int clients = 8;
        double seconds = 10;
        bool faults = true;
        string? role = null;
        string? name = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--clients" when i + 1 < args.Length:
                    clients = int.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--duration" when i + 1 < args.Length:
                    seconds = double.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--no-faults":
                    faults = false;
                    break;
                case "--role" when i + 1 < args.Length:
                    role = args[++i];
                    break;
                case "--name" when i + 1 < args.Length:
                    name = args[++i];
                    break;
                case "--help" or "-h":
                    Console.WriteLine(Usage);
                    return 0;
                default:
                    Console.Error.WriteLine($"unknown argument '{args[i]}'\n{Usage}");
                    return 2;
            }
        }
        if (clients < 3 || seconds <= 0)
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }
        TimeSpan duration = TimeSpan.FromSeconds(seconds);
        if (role is "client" or "garbage")
        {
            return await ClientRole.RunAsync(name!, role == "garbage", duration);
        }
        return await RunServerAsync(clients, duration, faults);
    }

    private static async Task<int> RunServerAsync(int clientCount, TimeSpan duration, bool faults)
    {
        if (Console.IsOutputRedirected)
        {
            AnsiConsole.Console.Profile.Width = 120;
        }
        string name = $"service-sample-{Environment.ProcessId}";
        var events = new ConcurrentQueue<string>();
        var options = new PageRangeServerOptions { MaxThreads = 4, ConnectionOptions = new PageRangeOptions { RegionSize = 1L << 20 } };
        await using PageRangeServer server = PageRangeServer.Start(name, options, builder => builder.Map(ServiceCodes.Checksum, (tx, _) =>
        {
            Span<byte> reply = stackalloc byte[sizeof(ulong)];
            BinaryPrimitives.WriteUInt64LittleEndian(reply, Fnv(tx.Payload));
            tx.Reply(reply);
        }));
        server.ClientConnected += (_, e) => events.Enqueue($"{Time()} connected: {e.Client}");
        server.ClientDisconnected += (_, e) => events.Enqueue($"{Time()} {Markup.Escape(e.ToString())}");
        server.HandshakeFailed += (_, e) => events.Enqueue($"{Time()} handshake failed: {Markup.Escape(e.Exception.Message)}");

        // Client 0 is killed halfway; client 1 scribbles over its rings; the rest are honest.
        var rows = new ClientRow[clientCount];
        var processes = new Process[clientCount];
        for (int i = 0; i < clientCount; i++)
        {
            string role = faults && i == 1 ? "garbage" : "client";
            rows[i] = new ClientRow(i, faults && i == 0 ? "killed halfway" : faults && i == 1 ? "scribbles" : "honest");
            processes[i] = StartClient(name, role, duration, rows[i]);
        }
        var clock = Stopwatch.StartNew();
        bool killed = !faults;
        try
        {
            await AnsiConsole.Live(Render(rows, server, events, clock.Elapsed, duration)).StartAsync(async context =>
            {
                while (processes.Any(process => !process.HasExited) && clock.Elapsed < duration + TimeSpan.FromSeconds(30))
                {
                    // Halfway, once it is calling (on a busy machine a client may take a while to start).
                    if (!killed && clock.Elapsed >= duration / 2 && rows[0].Calls > 0)
                    {
                        processes[0].Kill();
                        rows[0].State = "SIGKILL";
                        killed = true;
                    }
                    context.UpdateTarget(Render(rows, server, events, clock.Elapsed, duration));
                    await Task.Delay(250);
                }
                context.UpdateTarget(Render(rows, server, events, clock.Elapsed, duration));
            });
        }
        finally
        {
            foreach (Process process in processes)
            {
                if (!process.HasExited)
                {
                    process.Kill();
                }
                process.Dispose();
            }
        }
        await server.StopAsync(new CancellationTokenSource(TimeSpan.FromSeconds(5)).Token);
        bool honestOk = rows.Where(row => row.Role == "honest").All(row => row.State == "done" && row.Errors == 0 && row.Calls > 0);
        AnsiConsole.MarkupLine(honestOk
            ? "[green]every honest client called to the end without an error[/]"
            : "[red]an honest client failed or was affected[/]");
        return honestOk ? 0 : 1;
    }

    private static Process StartClient(string name, string role, TimeSpan duration, ClientRow row)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath ?? "dotnet")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        if (Path.GetFileNameWithoutExtension(start.FileName) == "dotnet")
        {
            start.ArgumentList.Add(typeof(Program).Assembly.Location);
        }
        foreach (string argument in new[] { "--role", role, "--name", name, "--duration", duration.TotalSeconds.ToString(CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(argument);
        }
        Process process = Process.Start(start) ?? throw new InvalidOperationException("The client process did not start.");
        row.Pid = process.Id;
        process.OutputDataReceived += (_, e) => OnClientLine(row, e.Data);
        process.ErrorDataReceived += (_, e) =>
        {
            if (!string.IsNullOrWhiteSpace(e.Data))
            {
                row.State = "failed";
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static void OnClientLine(ClientRow row, string? line)
    {
        if (line is null)
        {
            return;
        }
        string[] parts = line.Split(' ');
        switch (parts[0])
        {
            case "pid":
                row.State = "calling";
                break;
            case "stats" when parts.Length == 6:
                row.Calls = long.Parse(parts[1], CultureInfo.InvariantCulture);
                row.CallsPerSecond = double.Parse(parts[2], CultureInfo.InvariantCulture);
                row.P50Micros = double.Parse(parts[3], CultureInfo.InvariantCulture);
                row.P99Micros = double.Parse(parts[4], CultureInfo.InvariantCulture);
                row.Errors = long.Parse(parts[5], CultureInfo.InvariantCulture);
                break;
            case "scribbled":
                row.State = "scribbled";
                break;
            case "closed":
                row.State = "closed by server";
                row.CallsPerSecond = 0;
                break;
            case "done":
                row.State = "done";
                break;
            default:
                break;
        }
    }

    private static Rows Render(ClientRow[] rows, PageRangeServer server, ConcurrentQueue<string> events, TimeSpan elapsed, TimeSpan duration)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .Title($"PageRange service '{server.Name}', pid {Environment.ProcessId}: {Math.Min(elapsed.TotalSeconds, duration.TotalSeconds):F1} of {duration.TotalSeconds:F0} s")
            .AddColumns("client", "pid", "role", "state", "calls", "calls/s", "p50 µs", "p99 µs", "errors");
        foreach (ClientRow row in rows)
        {
            string state = row.State switch
            {
                "calling" or "done" => $"[green]{row.State}[/]",
                "SIGKILL" or "closed by server" or "scribbled" => $"[yellow]{row.State}[/]",
                "failed" => "[red]failed[/]",
                _ => row.State,
            };
            table.AddRow(
                row.Index.ToString(CultureInfo.InvariantCulture), row.Pid.ToString(CultureInfo.InvariantCulture), row.Role, state,
                row.Calls.ToString("N0", CultureInfo.InvariantCulture), row.CallsPerSecond.ToString("N0", CultureInfo.InvariantCulture),
                row.P50Micros.ToString("F0", CultureInfo.InvariantCulture), row.P99Micros.ToString("F0", CultureInfo.InvariantCulture),
                row.Errors.ToString(CultureInfo.InvariantCulture));
        }
        string summary = $"server: {server.ClientCount} clients, {server.ThreadCount} worker threads (peak {server.PeakThreadCount}, max 4), {server.InFlightCalls} calls in flight";
        var recent = new List<string>(events.TakeLast(6));
        return new Rows(table, new Markup(Markup.Escape(summary)), new Markup(string.Join('\n', recent.Select(line => $"[grey]{line}[/]"))));
    }

    private static string Time() => DateTime.Now.ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture);

    private static ulong Fnv(ReadOnlySpan<byte> bytes)
    {
        ulong hash = 0xCBF29CE484222325UL;
        foreach (byte b in bytes)
        {
            hash = (hash ^ b) * 0x100000001B3UL;
        }
        return hash;
    }
}

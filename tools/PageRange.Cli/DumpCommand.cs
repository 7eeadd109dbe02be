using System.CommandLine;
using System.Text;
using PageRange.Server;
using PageRange.Transport;

namespace PageRange.Cli;

/// <summary>
/// <c>pagerange dump NAME</c>: connects to the server on NAME as a normal client, calls its diagnostics code
/// (<see cref="PageRangeServer.DiagnosticsCode"/>) and prints the state dump it answers: its clients, both regions' pages
/// Used/Available/Free, buffers, rings and its worker pool. The server must have
/// <see cref="PageRangeServerOptions.EnableDiagnostics"/> on and run as the same uid.
/// </summary>
internal static class DumpCommand
{
    /// <summary>Exit code: nobody listens on the name.</summary>
    public const int NotThereExitCode = 3;

    /// <summary>Exit code: the server does not answer diagnostics (off, or another uid).</summary>
    public const int RefusedExitCode = 4;

    public static Command Create()
    {
        var name = new Argument<string>("NAME") { Description = "The server's PageRange name (as 'pagerange list' shows it)." };
        var privateName = new Option<bool>("--private")
        {
            Description = "The server listens on a private name (PageRangeOptions.Namespace = Private) rather than an abstract one.",
        };
        var timeout = new Option<double>("--timeout")
        {
            Description = "Seconds to wait for the connection and for the answer.",
            DefaultValueFactory = _ => 10,
        };
        timeout.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<double>() is not (> 0 and <= 600))
            {
                result.AddError("--timeout takes seconds above 0 and at most 600");
            }
        });
        var command = new Command("dump",
            "Asks a server that enabled diagnostics (PageRangeServerOptions.EnableDiagnostics) for its state: clients, " +
            "pages Used/Available/Free of both regions, buffers, rings, worker threads. Same uid only.")
        {
            name, privateName, timeout,
        };
        command.SetAction(parse => Run(
            parse.GetValue(name)!,
            parse.GetValue(privateName) ? PageRangeNamespace.Private : PageRangeNamespace.Abstract,
            TimeSpan.FromSeconds(parse.GetValue(timeout)),
            parse.InvocationConfiguration.Output,
            parse.InvocationConfiguration.Error));
        return command;
    }

    private static int Run(string name, PageRangeNamespace space, TimeSpan timeout, TextWriter output, TextWriter error)
    {
        var options = new PageRangeOptions { Namespace = space, ConnectTimeout = timeout, WaitStrategy = WaitStrategy.Park };
        PageRangeConnection connection;
        try
        {
            connection = PageRangeConnection.ConnectAsync(name, options).AsTask().GetAwaiter().GetResult();
        }
        catch (ArgumentException invalid)
        {
            error.WriteLine($"error: '{name}' is not a PageRange name: {invalid.Message.TrimEnd('.')}.");
            return PagerangeCommand.UsageExitCode;
        }
        catch (Exception failure) when (failure is PageRangeException or TimeoutException)
        {
            error.WriteLine($"error: cannot connect to the PageRange server '{name}': {failure.Message.TrimEnd('.')}.");
            return NotThereExitCode;
        }
        using (connection)
        {
            try
            {
                using Transaction reply = connection.Call(PageRangeServer.DiagnosticsCode, [], timeout);
                output.Write(Encoding.UTF8.GetString(reply.Payload));
                return 0;
            }
            catch (RemoteCallException refused) when (refused.Status == CallStatus.Unimplemented)
            {
                error.WriteLine($"error: the server '{name}' has diagnostics off: it answers 'pagerange dump' only when started with PageRangeServerOptions.EnableDiagnostics = true.");
                return RefusedExitCode;
            }
            catch (RemoteCallException refused)
            {
                error.WriteLine($"error: the server '{name}' refused the dump ({refused.Status}): {refused.Message.TrimEnd('.')}.");
                return RefusedExitCode;
            }
            catch (Exception failure) when (failure is PageRangeException or TimeoutException)
            {
                error.WriteLine($"error: the dump from '{name}' failed: {failure.Message.TrimEnd('.')}.");
                return 1;
            }
        }
    }
}

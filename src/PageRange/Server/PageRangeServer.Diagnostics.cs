using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using PageRange.Transport;

namespace PageRange.Server;

/// <summary>The diagnostics call (<c>pagerange dump</c>): the server's state as text, for a caller of the server's own uid.</summary>
public sealed partial class PageRangeServer
{
    /// <summary>
    /// The reserved call code a server with <see cref="PageRangeServerOptions.EnableDiagnostics"/> answers with its state
    /// dump, as UTF-8 text: 0xFFFFFF00. No handler may be mapped to it.
    /// </summary>
    /// <remarks>
    /// The request's payload is ignored. A caller of another uid than the server's gets
    /// <see cref="CallStatus.PermissionDenied"/>; with diagnostics off the code is not served
    /// (<see cref="CallStatus.Unimplemented"/>), like any unmapped code.
    /// </remarks>
    public const uint DiagnosticsCode = 0xFFFF_FF00;

    /// <summary>The diagnostics handler, mapped at <see cref="DiagnosticsCode"/> when the option is on.</summary>
    private static ServerHandler DiagnosticsHandler(StrongBox<PageRangeServer?> server) =>
        new(DiagnosticsCode, (transaction, context) =>
        {
            // The box is filled before the accept loop starts, so before any call can arrive.
            server.Value!.AnswerDiagnostics(transaction, context);
            return ValueTask.CompletedTask;
        }, OnewayOnly: false);

    private void AnswerDiagnostics(Transaction transaction, CallContext context)
    {
        uint ownUid = Interop.GetEffectiveUserId();
        if (context.PeerUid != ownUid)
        {
            // The dump shows other clients' pids and the server's memory: the server's own uid only, as debugfs is root's.
            throw new PageRangeStatusException(CallStatus.PermissionDenied,
                $"Diagnostics of server '{Name}' are for its own uid {ownUid} only, not uid {context.PeerUid}.");
        }
        if (!context.IsOneway)
        {
            transaction.Reply(Encoding.UTF8.GetBytes(DumpState()));
        }
    }

    /// <summary>The server's state as text: its worker pool, then every client with its connection's dump.</summary>
    internal string DumpState()
    {
        ClientSession[] sessions;
        lock (_sessionsLock)
        {
            sessions = [.. _sessions.Values.OrderBy(static session => session.Info.Id)];
        }
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture,
            $"server '{Name}' pid {Environment.ProcessId} uid {Interop.GetEffectiveUserId()}: {sessions.Length} clients, {_registry.Count} codes served, {Volatile.Read(ref _inFlight)} calls in flight{(_stopping ? ", stopping" : "")}\n");
        text.Append(CultureInfo.InvariantCulture,
            $"pool: {_pool.ThreadCount} threads (min {_options.MinThreads}, max {_options.MaxThreads}, peak {_pool.PeakThreadCount}, spawned {_pool.SpawnedCount}), {_pool.QueueLength} queued; fast handlers inline {(_options.RunFastHandlersInline ? "on" : "off")}, {InlineRescues} rescues\n");
        foreach (ClientSession session in sessions)
        {
            ClientInfo client = session.Info;
            text.Append(CultureInfo.InvariantCulture,
                $"\nclient {client.Id}: pid {client.Pid} uid {client.Uid} gid {client.Gid}, connected {session.Connected.TotalSeconds:F1} s, {session.Calls} calls\n");
            // What holds a session that does not end: its receive loop (a faulted one never reports the end), handlers.
            text.Append(CultureInfo.InvariantCulture,
                $"  session: {session.InFlight} in handlers{(session.StoppedReading ? ", stopped reading" : "")}{InlineState(session)}, receive loop {session.Completion.Status}\n");
            text.Append(DumpConnection(session.Connection));
        }
        return text.ToString();
    }

    /// <summary>A handler running inline on the session's thread (and for how long), and whether a rescue receives meanwhile.</summary>
    private static string InlineState(ClientSession session)
    {
        long since = session.InlineSince;
        if (since == 0)
        {
            return "";
        }
        double milliseconds = (Stopwatch.GetTimestamp() - since) * 1000.0 / Stopwatch.Frequency;
        return string.Create(CultureInfo.InvariantCulture, $", a handler inline for {milliseconds:F1} ms{(session.Rescuing ? " (rescued)" : "")}");
    }

    private static string DumpConnection(PageRangeConnection connection)
    {
        try
        {
            return connection.DumpState();
        }
        catch (ObjectDisposedException)
        {
            // The client left while we were dumping: its session is on its way out.
            return "  (closed)\n";
        }
    }
}

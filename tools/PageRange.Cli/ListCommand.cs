using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace PageRange.Cli;

/// <summary><c>pagerange list [--json]</c>: the PageRange listeners of the machine, with their processes.</summary>
internal static class ListCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Print a JSON array instead of a table." };
        var command = new Command("list", "Lists the PageRange listeners on this machine (abstract sockets @pagerange/NAME) with pid, process name, uid and open connections.")
        {
            json,
        };
        command.SetAction(parse =>
        {
            TextWriter output = parse.InvocationConfiguration.Output;
            IReadOnlyList<ListenerInfo> listeners;
            try
            {
                listeners = ListenerScanner.Scan();
            }
            catch (Exception error) when (error is IOException or UnauthorizedAccessException)
            {
                parse.InvocationConfiguration.Error.WriteLine($"error: cannot read /proc/net/unix: {error.Message.TrimEnd('.')}.");
                return 1;
            }
            output.Write(parse.GetValue(json) ? ToJson(listeners) : ToTable(listeners));
            return 0;
        });
        return command;
    }

    /// <summary>A table with a header, one row per listener; "-" where a process could not be seen.</summary>
    internal static string ToTable(IReadOnlyList<ListenerInfo> listeners)
    {
        string[] header = ["NAME", "PID", "PROCESS", "UID", "CONNECTIONS"];
        List<string[]> rows = [header];
        rows.AddRange(listeners.Select(listener => new[]
        {
            listener.Name,
            listener.Pid?.ToString(CultureInfo.InvariantCulture) ?? "-",
            listener.ProcessName ?? "-",
            listener.Uid?.ToString(CultureInfo.InvariantCulture) ?? "-",
            listener.Connections.ToString(CultureInfo.InvariantCulture),
        }));
        int[] widths = [.. Enumerable.Range(0, header.Length).Select(column => rows.Max(row => row[column].Length))];
        var text = new StringBuilder();
        foreach (string[] row in rows)
        {
            text.AppendJoin("  ", row.Select((cell, column) => column == row.Length - 1 ? cell : cell.PadRight(widths[column]))).Append('\n');
        }
        if (listeners.Count == 0)
        {
            text.Append("(no PageRange listener on this machine)\n");
        }
        return text.ToString();
    }

    /// <summary>A JSON array of <c>{ name, pid, process, uid, connections, inode }</c>; unknown values are null.</summary>
    internal static string ToJson(IReadOnlyList<ListenerInfo> listeners)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartArray();
            foreach (ListenerInfo listener in listeners)
            {
                writer.WriteStartObject();
                writer.WriteString("name", listener.Name);
                WriteNumberOrNull(writer, "pid", listener.Pid);
                writer.WriteString("process", listener.ProcessName);
                WriteNumberOrNull(writer, "uid", listener.Uid);
                writer.WriteNumber("connections", listener.Connections);
                writer.WriteNumber("inode", listener.Inode);
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    private static void WriteNumberOrNull(Utf8JsonWriter writer, string name, long? value)
    {
        if (value is { } number)
        {
            writer.WriteNumber(name, number);
        }
        else
        {
            writer.WriteNull(name);
        }
    }
}

using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using PageRange.Diagnostics;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Diagnostics;

/// <summary>
/// The README's metrics table names every instrument of the <c>PageRange</c> meter with its kind and unit, and nothing
/// else, so the table cannot rot; the names follow the OpenTelemetry conventions the table announces.
/// </summary>
public sealed class MetricsTableTests
{
    [Fact]
    public void ReadmeTable_ListsEveryInstrumentOfTheMeter_WithItsKindAndUnit()
    {
        Dictionary<string, Instrument> instruments = PublishedInstruments();
        Dictionary<string, (string Kind, string Unit)> table = ReadmeTable();

        Assert.True(instruments.Count >= 29, $"only {instruments.Count} instruments were published");
        Assert.Empty(instruments.Keys.Except(table.Keys).Order());
        Assert.Empty(table.Keys.Except(instruments.Keys).Order());
        foreach ((string name, Instrument instrument) in instruments)
        {
            (string kind, string unit) = table[name];
            Assert.True(kind == KindOf(instrument), $"{name}: the table says '{kind}', the meter has '{KindOf(instrument)}'");
            Assert.True(unit == $"`{instrument.Unit}`", $"{name}: the table says {unit}, the meter has '{instrument.Unit}'");
            Assert.False(string.IsNullOrWhiteSpace(instrument.Description), $"{name} has no description");
        }
    }

    [Fact]
    public void InstrumentNames_FollowTheConventions()
    {
        foreach (string name in PublishedInstruments().Keys)
        {
            Assert.True(name.StartsWith("pagerange.", StringComparison.Ordinal) || name.StartsWith("rpc.", StringComparison.Ordinal), name);
            Assert.True(name.All(c => c is (>= 'a' and <= 'z') or '.' or '_'), $"{name} is not lower-case words and dots");
            Assert.DoesNotContain("..", name, StringComparison.Ordinal);
        }
    }

    private static Dictionary<string, Instrument> PublishedInstruments()
    {
        // The instruments are static fields: make sure the meter and all of them exist before listening.
        RuntimeHelpers.RunClassConstructor(typeof(PageRangeMetrics).TypeHandle);
        var found = new Dictionary<string, Instrument>(StringComparer.Ordinal);
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, _) =>
        {
            if (instrument.Meter.Name == PageRangeMetrics.MeterName)
            {
                lock (found)
                {
                    found[instrument.Name] = instrument;
                }
            }
        };
        listener.Start();
        lock (found)
        {
            return new Dictionary<string, Instrument>(found, StringComparer.Ordinal);
        }
    }

    private static string KindOf(Instrument instrument)
    {
        Type type = instrument.GetType().GetGenericTypeDefinition();
        return type == typeof(Counter<>) ? "counter"
            : type == typeof(UpDownCounter<>) ? "up-down counter"
            : type == typeof(Histogram<>) ? "histogram"
            : type == typeof(ObservableCounter<>) ? "observable counter"
            : type == typeof(ObservableGauge<>) ? "gauge"
            : type == typeof(ObservableUpDownCounter<>) ? "observable up-down counter"
            : type == typeof(Gauge<>) ? "gauge"
            : type.Name;
    }

    /// <summary>The rows of the README table whose header starts with <c>| instrument | kind | unit |</c>.</summary>
    private static Dictionary<string, (string Kind, string Unit)> ReadmeTable()
    {
        string[] lines = File.ReadAllLines(Path.Combine(RepositoryPaths.Root, "README.md"));
        int header = Array.FindIndex(lines, line => line.StartsWith("| instrument | kind | unit |", StringComparison.Ordinal));
        Assert.True(header >= 0, "README.md has no metrics table");
        var rows = new Dictionary<string, (string, string)>(StringComparer.Ordinal);
        foreach (string line in lines.Skip(header + 2).TakeWhile(line => line.StartsWith('|')))
        {
            string[] cells = [.. line.Split('|').Skip(1).Select(cell => cell.Trim())];
            string name = cells[0].Trim('`');
            Assert.True(rows.TryAdd(name, (cells[1], cells[2])), $"{name} is in the table twice");
        }
        return rows;
    }
}

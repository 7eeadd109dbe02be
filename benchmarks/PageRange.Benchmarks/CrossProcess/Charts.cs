using ScottPlot;
using ScottPlot.TickGenerators;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>PNG charts with ScottPlot: round-trip p50 and oneway throughput against message size, log-log.</summary>
internal static class Charts
{
    /// <summary>Writes the charts into <paramref name="directory"/>; returns their file names.</summary>
    public static List<string> Write(IReadOnlyList<Measurement> results, MachineInfo machine, string directory)
    {
        var files = new List<string>();
        if (Plot(results.Where(m => m.Workload == Workload.PingPong), m => m.Percentile(50) / 1000,
            "Ping-pong round trip p50 (µs, log)", $"Round trip vs message size\n{machine}", Path.Combine(directory, "roundtrip.png")))
        {
            files.Add("roundtrip.png");
        }
        if (Plot(results.Where(m => m.Workload == Workload.Oneway), m => m.BytesPerSecond / 1e9,
            "Oneway throughput (GB/s, log)", $"Oneway streaming vs message size\n{machine}", Path.Combine(directory, "throughput.png")))
        {
            files.Add("throughput.png");
        }
        return files;
    }

    private static bool Plot(IEnumerable<Measurement> measurements, Func<Measurement, double> value, string yLabel, string title, string path)
    {
        List<IGrouping<string, Measurement>> series = measurements.GroupBy(m => m.Label).ToList();
        if (series.Count == 0)
        {
            return false;
        }
        var plot = new Plot();
        foreach (IGrouping<string, Measurement> line in series)
        {
            double[] xs = line.Select(m => Math.Log10(m.Size)).ToArray();
            double[] ys = line.Select(m => Math.Log10(Math.Max(value(m), 1e-6))).ToArray();
            var scatter = plot.Add.Scatter(xs, ys);
            scatter.LegendText = line.Key;
            scatter.MarkerSize = 7;
            scatter.LineWidth = line.First().IsPageRange ? 2 : 3;
            if (line.First().IsPageRange && line.Key.Contains("msgpack", StringComparison.Ordinal))
            {
                scatter.LinePattern = LinePattern.Dashed;
            }
        }
        plot.Axes.Bottom.TickGenerator = new NumericManual(
            series.SelectMany(s => s).Select(m => m.Size).Distinct().Order()
                .Select(size => new Tick(Math.Log10(size), ReportWriter.SizeName(size))).ToArray());
        plot.Axes.Left.TickGenerator = new NumericAutomatic
        {
            MinorTickGenerator = new LogMinorTickGenerator(),
            IntegerTicksOnly = true,
            LabelFormatter = y => Math.Pow(10, y).ToString("G4", System.Globalization.CultureInfo.InvariantCulture),
        };
        plot.XLabel("message size");
        plot.YLabel(yLabel);
        plot.Title(title, size: 13);
        // Beside the plot, not on it: a transport measured at one size only (the struct transports, at 64 B) is a lone
        // point in the upper left, where a legend inside the axes hid it.
        plot.ShowLegend(Edge.Right);
        plot.SavePng(path, 1300, 700);
        return true;
    }
}

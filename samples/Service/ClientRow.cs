namespace Service;

/// <summary>What the server process knows of one client process, from the stats lines it prints.</summary>
internal sealed class ClientRow(int index, string role)
{
    public int Index { get; } = index;

    public string Role { get; } = role;

    public int Pid { get; set; }

    public string State { get; set; } = "starting";

    public long Calls { get; set; }

    public double CallsPerSecond { get; set; }

    public double P50Micros { get; set; }

    public double P99Micros { get; set; }

    public long Errors { get; set; }
}

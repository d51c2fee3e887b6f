using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace OrleansTwoPC.Client.Tests.Admin;

/// <summary>What one admin API call answered: status and the parsed JSON body.</summary>
public sealed record AdminReply(HttpStatusCode Status, JsonElement Body, string Text)
{
    public override string ToString() => $"{(int)Status} {Status}: {Text}";

    /// <summary>The <c>error</c> line of an error reply.</summary>
    public string Error => Body.ValueKind == JsonValueKind.Object && Body.TryGetProperty("error", out var e) ? e.GetString() ?? "" : "";
}

/// <summary>An HttpClient on a silo's admin console, optionally with a bearer token.</summary>
public sealed class AdminHttp(int port, string? token = null) : IDisposable
{
    private readonly HttpClient _http = new() { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };

    public string BaseUrl => _http.BaseAddress!.ToString().TrimEnd('/');

    /// <summary>The web server starts after the silo joined the cluster: waits until it answers.</summary>
    public async Task WaitUpAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try
            {
                await GetAsync("/api/transactions?limit=1");
                return;
            }
            catch (HttpRequestException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(250);
            }
        }
    }

    /// <summary>Waits until a process's output (read asynchronously) shows <paramref name="text"/>; true if it did.</summary>
    public static async Task<bool> OutputShowsAsync(Func<string> output, string text, TimeSpan timeout)
    {
        for (var deadline = DateTime.UtcNow + timeout; DateTime.UtcNow < deadline; await Task.Delay(100))
            if (output().Contains(text, StringComparison.Ordinal)) return true;
        return output().Contains(text, StringComparison.Ordinal);
    }

    public Task<AdminReply> GetAsync(string path) => SendAsync(new HttpRequestMessage(HttpMethod.Get, path));

    public Task<AdminReply> PostAsync(string path, string? json = null) => SendAsync(new HttpRequestMessage(HttpMethod.Post, path)
    {
        Content = json is null ? null : new StringContent(json, Encoding.UTF8, "application/json"),
    });

    public async Task<AdminReply> SendAsync(HttpRequestMessage request)
    {
        if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await _http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        JsonElement body;
        try
        {
            body = text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
        }
        catch (JsonException)
        {
            body = default;
        }

        return new AdminReply(response.StatusCode, body, text);
    }

    public void Dispose() => _http.Dispose();
}

using System.Net;

namespace OrleansTwoPC.Silo.Admin;

/// <summary>The operator web page (one HTML file with a little plain JavaScript over the admin API) and its sign-in form.</summary>
public static class AdminPage
{
    public const string LoginPath = "/login";

    /// <summary>Holds the token a browser signed in with (HttpOnly, SameSite=Strict), sent with every request of the page.</summary>
    public const string TokenCookie = "twopc-admin-token";

    public static readonly string Html = Load();

    public static string LoginHtml(string? problem) =>
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>OrleansTwoPC operator console: sign in</title></head>" +
        "<body style=\"font:14px system-ui,sans-serif;margin:40px\"><h1>OrleansTwoPC operator console</h1>" +
        (problem is null ? "" : $"<p id=\"problem\" style=\"color:#b00020\">{WebUtility.HtmlEncode(problem)}</p>") +
        $"<form method=\"post\" action=\"{LoginPath}\"><label>Token <input type=\"password\" name=\"token\" id=\"token\" size=\"40\" autofocus></label> " +
        "<button type=\"submit\" id=\"sign-in\">Sign in</button></form></body></html>";

    private static string Load()
    {
        using var stream = typeof(AdminPage).Assembly.GetManifestResourceStream("OrleansTwoPC.Silo.Admin.AdminPage.html")
                           ?? throw new InvalidOperationException("the operator page is not embedded in the silo assembly");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}

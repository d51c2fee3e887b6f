using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using OrleansTwoPC.Grains.Errors;
using OrleansTwoPC.Grains.Telemetry;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Silo.Admin;

/// <summary>A JSON error: one clear line.</summary>
public sealed record AdminError(string Error);

/// <summary>The body of an abort request.</summary>
public sealed record AbortRequest(string? Reason);

/// <summary>
/// The HTTP admin API (JSON), served on <see cref="AdminSettings.Port"/> only:
/// <c>GET /api/transactions</c> (status, since, until, orderId, offset, limit), <c>GET /api/transactions/{id}</c>
/// (timeline), <c>GET /api/overview</c> (minutes), <c>POST /api/transactions/{id}/recover</c>, <c>POST /api/recover</c> (all) and
/// <c>POST /api/transactions/{id}/abort</c> (<c>{"reason": "..."}</c>, a heuristic abort). Ids are order ids or
/// transaction ids (<c>tx-&lt;order id&gt;</c>). Errors are <see cref="AdminError"/> with 400 (bad input,
/// nothing changed), 401 (no or wrong token), 404 (unknown transaction), 409 (refused, e.g. aborting a
/// committed transaction), 503 (a database or service unavailable) or 500.
/// </summary>
public static class AdminApi
{
    /// <summary>Who made the request (token name or remote address), set by the access check.</summary>
    public const string CallerItem = "twopc.admin.caller";

    public static void MapAdmin(this WebApplication app, AdminSettings settings)
    {
        app.Use((context, next) => context.Connection.LocalPort == settings.Port ? Authorize(context, next, settings) : next(context));

        var host = $"*:{settings.Port}";
        app.MapGet("/", () => Results.Content(AdminPage.Html, "text/html; charset=utf-8")).RequireHost(host);
        app.MapGet(AdminPage.LoginPath, () => Results.Content(AdminPage.LoginHtml(null), "text/html; charset=utf-8")).RequireHost(host);
        app.MapPost(AdminPage.LoginPath, (Delegate)((HttpContext context) => SignInAsync(context, settings))).RequireHost(host).DisableAntiforgery();
        var api = app.MapGroup("/api").RequireHost(host);
        api.MapGet("/overview", OverviewAsync);
        api.MapGet("/transactions", ListAsync);
        api.MapGet("/transactions/{id}", TimelineAsync);
        api.MapPost("/transactions/{id}/recover", RecoverAsync);
        api.MapPost("/recover", RecoverAllAsync);
        api.MapPost("/transactions/{id}/abort", AbortAsync);
    }

    /// <summary>
    /// Every request on the admin port (API and page) carries <c>Authorization: Bearer &lt;token&gt;</c> when
    /// tokens are configured; the token's name is who asked. Without tokens (loopback only) the caller is the
    /// remote address.
    /// </summary>
    private static async Task Authorize(HttpContext context, RequestDelegate next, AdminSettings settings)
    {
        var remote = context.Connection.RemoteIpAddress?.ToString() ?? "unknown address";
        if (!settings.RequiresToken)
        {
            context.Items[CallerItem] = remote;
            await NextWithJsonErrors(context, next);
            return;
        }

        if (context.Request.Path == AdminPage.LoginPath)
        {
            // The sign-in form is the one thing served without a token: it is how a browser presents one.
            await next(context);
            return;
        }

        var header = context.Request.Headers.Authorization.ToString();
        var presented = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header["Bearer ".Length..].Trim()
            : context.Request.Cookies[AdminPage.TokenCookie];
        var name = presented is null ? null : settings.Tokens.FirstOrDefault(t => SameSecret(t.Value, presented)).Key;
        if (name is null)
        {
            context.Response.Headers.WWWAuthenticate = "Bearer realm=\"twopc-admin\"";
            await Error(StatusCodes.Status401Unauthorized,
                presented is null ? $"this console needs a bearer token (Authorization: Bearer <token>; in a browser sign in at {AdminPage.LoginPath})" : "the bearer token is not one of this console's tokens")
                .ExecuteAsync(context);
            return;
        }

        context.Items[CallerItem] = $"{name} ({remote})";
        await NextWithJsonErrors(context, next);
    }

    /// <summary>Errors the framework answers with an empty body (no such route, wrong method) become JSON too.</summary>
    private static async Task NextWithJsonErrors(HttpContext context, RequestDelegate next)
    {
        await next(context);
        if (context.Response.HasStarted || context.Response.StatusCode < 400 || context.Response.ContentLength > 0 || context.Response.ContentType is not null)
            return;
        var request = $"{context.Request.Method} {context.Request.Path}";
        await Error(context.Response.StatusCode, context.Response.StatusCode switch
        {
            StatusCodes.Status404NotFound => $"{request}: no such page or endpoint on the operator console (see docs/operations.md)",
            StatusCodes.Status405MethodNotAllowed => $"{request}: method not allowed here",
            var status => $"{request}: HTTP {status}",
        }).ExecuteAsync(context);
    }

    private static bool SameSecret(string expected, string presented) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(expected)), SHA256.HashData(Encoding.UTF8.GetBytes(presented)));

    /// <summary>Checks a token typed into the sign-in form and keeps it in an HttpOnly, same-site cookie.</summary>
    private static async Task<IResult> SignInAsync(HttpContext context, AdminSettings settings)
    {
        var form = context.Request.HasFormContentType ? await context.Request.ReadFormAsync(context.RequestAborted) : null;
        var token = form?["token"].ToString().Trim() ?? "";
        var name = settings.Tokens.FirstOrDefault(t => SameSecret(t.Value, token)).Key;
        if (!settings.RequiresToken) return Results.Redirect("/");
        if (name is null)
            return Results.Content(AdminPage.LoginHtml("that is not one of this console's tokens"), "text/html; charset=utf-8", statusCode: StatusCodes.Status401Unauthorized);
        context.Response.Cookies.Append(AdminPage.TokenCookie, token, new CookieOptions { HttpOnly = true, SameSite = SameSiteMode.Strict, Path = "/" });
        return Results.Redirect("/");
    }

    private static async Task<IResult> OverviewAsync(HttpContext context, ServiceDatabases databases, TimeProvider time)
    {
        var text = context.Request.Query["minutes"].ToString();
        var minutes = 5;
        if (text.Length > 0 && (!int.TryParse(text, out minutes) || minutes is < 1 or > 1440))
            return Error(StatusCodes.Status400BadRequest, $"minutes must be a whole number from 1 to 1440, not '{text}'");
        return await Guarded("overview", async () =>
            Results.Json(await new TransactionOverviewReader(databases, TwoPcTelemetry.ClassifyAbortReason).ReadAsync(TimeSpan.FromMinutes(minutes), time.GetUtcNow(), context.RequestAborted)));
    }

    public static string Caller(HttpContext context) => context.Items[CallerItem] as string ?? "unknown";

    private static async Task<IResult> ListAsync(HttpContext context, ServiceDatabases databases, TimeProvider time)
    {
        var q = context.Request.Query;
        TransactionQuery query;
        try
        {
            query = TransactionQuery.Parse(q["status"], q["since"], q["until"], q["orderId"], q["offset"], q["limit"], time.GetUtcNow());
        }
        catch (FormatException ex)
        {
            return Error(StatusCodes.Status400BadRequest, ex.Message);
        }

        return await Guarded("list transactions", async () => Results.Json(await new TransactionListReader(databases).ListAsync(query, context.RequestAborted)));
    }

    private static Task<IResult> TimelineAsync(string id, IGrainFactory grains) =>
        WithId(id, tx => Guarded($"timeline of {tx}", async () =>
        {
            var timeline = await grains.GetGrain<ITransactionAdminGrain>(0).GetTimeline(tx);
            return timeline.Known
                ? Results.Json(timeline)
                : Error(StatusCodes.Status404NotFound, $"unknown transaction {tx}: no service has a record of it");
        }));

    private static Task<IResult> RecoverAsync(string id, HttpContext context, IGrainFactory grains, ILoggerFactory logs) =>
        WithId(id, tx => Guarded($"recover {tx}", async () =>
        {
            Log(logs).LogWarning("Operator {Caller}: recover {TransactionId}", Caller(context), tx);
            return Results.Json(await grains.GetGrain<ITransactionAdminGrain>(0).Recover(tx));
        }));

    private static Task<IResult> RecoverAllAsync(HttpContext context, IGrainFactory grains, ILoggerFactory logs) =>
        Guarded("recover all", async () =>
        {
            Log(logs).LogWarning("Operator {Caller}: recover all", Caller(context));
            return Results.Json(await grains.GetGrain<ITransactionAdminGrain>(0).RecoverAll());
        });

    private static async Task<IResult> AbortAsync(string id, HttpContext context, IGrainFactory grains, ILoggerFactory logs)
    {
        AbortRequest? body;
        try
        {
            body = await context.Request.ReadFromJsonAsync<AbortRequest>(context.RequestAborted);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or BadHttpRequestException)
        {
            return Error(StatusCodes.Status400BadRequest, "the body must be JSON: {\"reason\": \"why the transaction is aborted\"}");
        }

        if (string.IsNullOrWhiteSpace(body?.Reason))
            return Error(StatusCodes.Status400BadRequest, "a reason is required: {\"reason\": \"why the transaction is aborted\"}");
        var reason = body.Reason.Trim();
        if (reason.Length > 500 || reason.Any(char.IsControl))
            return Error(StatusCodes.Status400BadRequest, "the reason must be one line of at most 500 characters");

        return await WithId(id, tx => Guarded($"abort {tx}", async () =>
        {
            Log(logs).LogWarning("Operator {Caller}: heuristic abort of {TransactionId} ({Reason})", Caller(context), tx, reason);
            var report = await grains.GetGrain<ITransactionAdminGrain>(0).HeuristicAbort(tx, $"{reason} (by {Caller(context)})");
            return report.Decision == "Abort"
                ? Results.Json(report)
                : Error(StatusCodes.Status409Conflict, $"{tx} was not aborted: its decision is {report.Decision}");
        }));
    }

    private static async Task<IResult> WithId(string id, Func<string, Task<IResult>> action)
    {
        var tx = id.Trim().StartsWith("tx-", StringComparison.Ordinal) ? id.Trim() : TransactionIds.FromOrderId(id.Trim());
        try
        {
            // The console's id rules (tpc tx, tpc abort): letters, digits and . _ : - up to the id length.
            OrderPlan.CheckResourceId(tx, "transaction id");
        }
        catch (OrderValidationException ex)
        {
            return Error(StatusCodes.Status400BadRequest, ex.Message);
        }

        return await action(tx);
    }

    private static async Task<IResult> Guarded(string operation, Func<Task<IResult>> action)
    {
        try
        {
            return await action();
        }
        catch (NpgsqlException ex)
        {
            return Error(StatusCodes.Status503ServiceUnavailable, $"database unavailable during {operation}: {TwoPcException.OneLine(ex.Message)}");
        }
        catch (Exception ex) when (Find<InvalidOperationException>(ex) is { } refused && TwoPcException.Find(ex) is null)
        {
            // The coordinator refuses what the protocol does not allow (aborting a committed transaction).
            return Error(StatusCodes.Status409Conflict, $"{operation} refused: {TwoPcException.OneLine(refused.Message)}");
        }
        catch (Exception ex)
        {
            var contract = ContractErrors.ToContract(ex, operation);
            return Error(contract.Code switch
            {
                TwoPcErrorCode.InvalidRequest => StatusCodes.Status400BadRequest,
                TwoPcErrorCode.Conflict => StatusCodes.Status409Conflict,
                TwoPcErrorCode.StorageUnavailable or TwoPcErrorCode.ServiceUnavailable => StatusCodes.Status503ServiceUnavailable,
                _ => StatusCodes.Status500InternalServerError,
            }, contract.Message);
        }
    }

    private static T? Find<T>(Exception? ex) where T : Exception
    {
        for (var current = ex; current is not null; current = current.InnerException)
            if (current is T found) return found;
        return null;
    }

    public static IResult Error(int status, string message) => Results.Json(new AdminError(message), statusCode: status);

    private static ILogger Log(ILoggerFactory logs) => logs.CreateLogger("OrleansTwoPC.Admin");
}

using Microsoft.Extensions.Logging;

namespace OrleansTwoPC.Grains.Errors;

/// <summary>
/// Incoming call filter: when a grain call made by a client (the <c>tpc</c> console, an application) fails
/// with an exception the client could not deserialize (a driver's, a server-only type) or with a storage
/// failure, the client gets a <see cref="TwoPcException"/> with a code and one line instead. Calls between
/// grains keep their exceptions: every silo has every type, and the grains act on them.
/// </summary>
public sealed class ClientErrorFilter(ILogger<ClientErrorFilter> logger) : IIncomingGrainCallFilter
{
    public async Task Invoke(IIncomingGrainCallContext context)
    {
        try
        {
            await context.Invoke();
        }
        catch (Exception ex) when (context.SourceId is { } caller && caller.IsClient() && !ContractErrors.PassesAsIs(ex))
        {
            var operation = $"{context.InterfaceName.Split('.', '+').Last()}.{context.MethodName} of {context.TargetId}";
            var translated = ContractErrors.ToContract(ex, operation);
            logger.LogWarning("Call {Operation} from client {Client} failed; the client is told {Code}: {Message} (was {Error})",
                operation, caller, translated.Code, translated.Message, ContractErrors.Describe(ex));
            throw translated;
        }
    }
}

using System.Data;
using Npgsql;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>One query parameter, typed the way the Orleans providers type it.</summary>
public readonly record struct Arg(string Name, object? Value, DbType Type);

/// <summary>
/// Runs a stored Orleans query by key, like the providers do: the text comes from OrleansQuery,
/// parameters are generic DbParameters with an explicit DbType, columns are read by name.
/// </summary>
public static class QueryRunner
{
    public static async Task<List<Dictionary<string, object?>>> RunAsync(string connectionString, string queryKey, params Arg[] args)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();

        string text;
        await using (var lookup = new NpgsqlCommand("SELECT QueryText FROM OrleansQuery WHERE QueryKey = @k", connection))
        {
            lookup.Parameters.AddWithValue("k", queryKey);
            text = (string?)await lookup.ExecuteScalarAsync() ?? throw new InvalidOperationException($"Query {queryKey} missing");
        }

        await using var command = connection.CreateCommand();
        command.CommandText = text;
        foreach (var arg in args)
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = arg.Name;
            parameter.DbType = arg.Type;
            parameter.Value = arg.Value ?? DBNull.Value;
            command.Parameters.Add(parameter);
        }

        var rows = new List<Dictionary<string, object?>>();
        await using var reader = await command.ExecuteReaderAsync();
        do
        {
            while (await reader.ReadAsync())
            {
                var row = new Dictionary<string, object?>(StringComparer.OrdinalIgnoreCase);
                for (var i = 0; i < reader.FieldCount; i++)
                {
                    row[reader.GetName(i)] = reader.IsDBNull(i) ? null : reader.GetValue(i);
                }

                rows.Add(row);
            }
        }
        while (await reader.NextResultAsync());

        return rows;
    }

    public static async Task<object?> ScalarAsync(string connectionString, string sql, params (string Name, object Value)[] args)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in args)
        {
            command.Parameters.AddWithValue(name, value);
        }

        var result = await command.ExecuteScalarAsync();
        return result is DBNull ? null : result;
    }
}

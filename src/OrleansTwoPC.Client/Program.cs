using OrleansTwoPC.Client;

// tpc: the console of the transaction manager. Everything is in TpcCommandLine; see 'tpc --help'.
return await TpcCommandLine.RunAsync(args, Console.Out, Console.Error);

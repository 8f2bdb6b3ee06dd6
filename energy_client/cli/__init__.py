"""The marketplace from the command line: keys, accounts, trading, receipts.

::

    python -m energy_client keys new alice.theblock
    python -m energy_client account create alice.theblock
    python -m energy_client offers --energy-type solar --max-price 0.10
    python -m energy_client buy energy-0x9c1ffbe03db22a35 10 --max-price 0.10 \\
        --as bob.theblock

Every command is one or a few JSON-RPC calls (energy_client.rpc_client signs
them with a key kept in the keys directory); lists print as plain-text
tables, ``--json`` prints the JSON-RPC result instead. Amounts are typed and
shown in BLOCK and kWh, exactly: the micro-BLOCK and Wh of the API, as
decimals. Each command group is a module of this package; ``program`` puts
them together (see docs/cli.md).

Exit status: 0 done; 1 the marketplace refused the call (the reason is on
stderr) or an operation failed; 2 bad usage, an unknown key, or the
marketplace could not be reached.
"""

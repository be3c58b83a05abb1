"""`breach serve`: webhooks from monitoring, provider receipts, health.

Modules, one concept each: :mod:`.config` (the ``breach.toml`` file), :mod:`.routing` (rules
and fact mapping), :mod:`.alertmanager` (its payload), :mod:`.auth` (credentials, signatures,
replays), :mod:`.intake` (create or join incidents), :mod:`.receipts` (provider receipts),
:mod:`.app` (HTTP), :mod:`.logs` and :mod:`.commands` (CLI).
"""

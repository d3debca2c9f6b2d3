"""`python -m bench soak --minutes N [--seed S]`: the bot under mixed load while things break.

A real launcher runs two clusters (four shards) against the sandbox, with a PostgreSQL and a
Redis of the soak's own (bench/soak/rig.py). The load (bench/soak/load.py) sends chat, prefix
and slash rolls, reminders, Reroll clicks and warnings at a stated rate and keeps a ledger of
what the bot acknowledged; faults (bench/soak/faults.py) come on a schedule from the seed; at
the end the invariants (bench/soak/checks.py) are printed as a table, and the exit status is 1
when one fails. The seed is printed first, so a failing run can be replayed."""

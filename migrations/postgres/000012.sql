-- Phase priorities and pauses (issue 15): a phase's `priority:` from its config (higher leases
-- first when several phases have claimable tasks), and whether `labsweep pause` stopped it from
-- starting new tasks. `paused` is the ledger's own state: a sync of the configs leaves it alone.
ALTER TABLE phases ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE phases ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;

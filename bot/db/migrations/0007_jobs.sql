-- Scheduled work of every feature (bot/jobs/, docs/jobs.md): one row per thing to do at a time.
-- Every worker's job runner claims due rows with SELECT ... FOR UPDATE SKIP LOCKED, a worker
-- token and a lease, runs the kind's handler, and marks the row done (in the transaction the
-- handler's database effect commits in) or retries it with backoff, or fails it.

CREATE TABLE jobs (
    id                BIGSERIAL PRIMARY KEY,
    kind              TEXT NOT NULL,          -- which handler runs it, e.g. 'moderation.unban'
    key               TEXT NOT NULL,          -- the feature's name for it: one job per (kind, key)
    -- The guild whose shard's cluster runs it; NULL: any cluster.
    guild_id          BIGINT,
    due_at            TIMESTAMPTZ NOT NULL,   -- when it should run; `late` is measured from it
    payload           JSONB NOT NULL DEFAULT '{}',
    state             TEXT NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    attempts          INTEGER NOT NULL DEFAULT 0,  -- claims so far
    retry_at          TIMESTAMPTZ,            -- after a failed attempt: not before this
    claimed_by        TEXT,                   -- worker token, 'c<cluster>:<pid>:<random>'
    claimed_at        TIMESTAMPTZ,
    first_claimed_at  TIMESTAMPTZ,            -- an earlier attempt's effect can't be older
    lease_until       TIMESTAMPTZ,            -- a running row whose lease passed is reclaimable
    finished_at       TIMESTAMPTZ,
    error             TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (kind, key)
);

CREATE INDEX jobs_due ON jobs (due_at) WHERE state = 'pending';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';

-- Reminders deliver through jobs from now on (kind 'reminders.deliver', one job per delivery);
-- the deliveries still to send become jobs, keeping their attempts and first claim so that a
-- send a worker completed before the upgrade is still found by its nonce rather than repeated.
INSERT INTO jobs (kind, key, guild_id, due_at, payload, attempts, retry_at, first_claimed_at)
SELECT 'reminders.deliver', 'delivery:' || d.id, d.shard_guild, d.fire_at,
       jsonb_build_object('delivery', d.id), d.attempts, d.retry_at, d.first_claimed_at
FROM reminder_deliveries d
WHERE d.status IN ('pending', 'firing');

UPDATE reminder_deliveries SET status = 'pending', lease_until = NULL WHERE status = 'firing';

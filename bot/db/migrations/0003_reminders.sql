-- Reminders: what a user asked for (reminders) and each message it sends (reminder_deliveries).
-- Every worker's scheduler claims due deliveries with SELECT ... FOR UPDATE SKIP LOCKED and a
-- lease; see bot/cogs/reminders/scheduler.py and docs/reminders.md.

CREATE TABLE reminders (
    id            BIGSERIAL PRIMARY KEY,
    author_id     BIGINT NOT NULL,
    guild_id      BIGINT,               -- NULL: set in a DM
    channel_id    BIGINT NOT NULL,      -- where it was set; channel deliveries go here
    target        TEXT NOT NULL CHECK (target IN ('me', 'channel', 'players')),
    via           TEXT NOT NULL CHECK (via IN ('dm', 'channel')),
    message       TEXT NOT NULL CHECK (char_length(message) BETWEEN 1 AND 1000),
    zone          TEXT NOT NULL,        -- the zone day-based repeats keep their wall time in
    first_at      TIMESTAMPTZ NOT NULL, -- the first event
    local_at      TIMESTAMP NOT NULL,   -- first_at as wall time in zone
    leads         INTEGER[] NOT NULL DEFAULT '{0}', -- seconds before each event, largest first
    repeat_unit   TEXT CHECK (repeat_unit IN ('hour', 'day')),
    repeat_every  INTEGER CHECK (repeat_every >= 1),
    repeat_times  INTEGER CHECK (repeat_times >= 2),
    repeat_until  TIMESTAMPTZ,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'done', 'cancelled')),
    cancelled_by  BIGINT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((repeat_unit IS NULL) = (repeat_every IS NULL))
);

CREATE INDEX reminders_author_active ON reminders (author_id) WHERE status = 'active';
CREATE INDEX reminders_guild_active ON reminders (guild_id) WHERE status = 'active';

CREATE TABLE reminder_deliveries (
    id                BIGSERIAL PRIMARY KEY,
    reminder_id       BIGINT NOT NULL REFERENCES reminders (id) ON DELETE CASCADE,
    occurrence        INTEGER NOT NULL,    -- 0: the first event; k: its k-th repeat
    lead              INTEGER NOT NULL,    -- seconds before the event
    event_at          TIMESTAMPTZ NOT NULL,
    fire_at           TIMESTAMPTZ NOT NULL,
    -- The guild whose shard's cluster delivers it (channel messages); NULL: any cluster (DMs).
    shard_guild       BIGINT,
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'firing', 'sent', 'failed', 'cancelled')),
    nonce             TEXT NOT NULL,       -- in the message, to recognise an earlier send
    attempts          INTEGER NOT NULL DEFAULT 0,  -- claims so far
    retry_at          TIMESTAMPTZ,         -- after a failed attempt: not before this
    claimed_by        TEXT,                -- worker token, 'c<cluster>:<pid>:<random>'
    claimed_at        TIMESTAMPTZ,
    first_claimed_at  TIMESTAMPTZ,         -- an earlier send can't be older than this
    lease_until       TIMESTAMPTZ,         -- a firing row whose lease passed is reclaimable
    sent_at           TIMESTAMPTZ,
    message_id        BIGINT,
    late_seconds      INTEGER,
    error             TEXT,
    UNIQUE (reminder_id, occurrence, lead)
);

CREATE INDEX reminder_deliveries_due ON reminder_deliveries (fire_at) WHERE status = 'pending';
CREATE INDEX reminder_deliveries_leased ON reminder_deliveries (lease_until)
    WHERE status = 'firing';
CREATE INDEX reminder_deliveries_reminder ON reminder_deliveries (reminder_id);

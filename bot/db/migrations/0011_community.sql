-- Community tools (issue 30, docs/community.md): command aliases, usage analytics, feedback.

-- An alias: `owner_id` 0 is the server's (made by its admins), else the member's own.
-- `expansion` starts with a built-in command's name; it never names another alias.
CREATE TABLE aliases (
    guild_id    BIGINT NOT NULL,
    owner_id    BIGINT NOT NULL,
    name        TEXT NOT NULL CHECK (name ~ '^[a-z0-9_-]{1,24}$'),
    expansion   TEXT NOT NULL CHECK (length(expansion) BETWEEN 1 AND 300),
    created_by  BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (guild_id, owner_id, name)
);

-- Command uses per server, command, UTC day and outcome ('ok', 'refused', 'error'), with the
-- summed latency of the uses that ran. Written in batches (bot/cogs/analytics/recorder.py),
-- never one row per use. Kept 90 days, then rolled up into analytics_months.
CREATE TABLE analytics_days (
    guild_id    BIGINT NOT NULL,           -- 0: direct messages
    day         DATE NOT NULL,
    command     TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'error')),
    uses        INTEGER NOT NULL,
    latency_ms  BIGINT NOT NULL,           -- summed over `uses`
    PRIMARY KEY (guild_id, day, command, outcome)
);
CREATE INDEX analytics_days_day ON analytics_days (day);

-- The same per UTC hour, kept 8 days.
CREATE TABLE analytics_hours (
    guild_id    BIGINT NOT NULL,
    hour        TIMESTAMPTZ NOT NULL,
    command     TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'error')),
    uses        INTEGER NOT NULL,
    latency_ms  BIGINT NOT NULL,
    PRIMARY KEY (guild_id, hour, command, outcome)
);
CREATE INDEX analytics_hours_hour ON analytics_hours (hour);

-- Who used a command on a day (active users), kept 90 days.
CREATE TABLE analytics_users (
    guild_id  BIGINT NOT NULL,
    day       DATE NOT NULL,
    user_id   BIGINT NOT NULL,
    uses      INTEGER NOT NULL,
    PRIMARY KEY (guild_id, day, user_id)
);
CREATE INDEX analytics_users_day ON analytics_users (day);

-- Older than 90 days: one row per server, command and month.
CREATE TABLE analytics_months (
    guild_id    BIGINT NOT NULL,
    month       DATE NOT NULL,             -- its first day
    command     TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    uses        BIGINT NOT NULL,
    latency_ms  BIGINT NOT NULL,
    PRIMARY KEY (guild_id, month, command, outcome)
);

-- A feedback ticket, and where its author hears back.
CREATE TABLE feedback (
    id          BIGSERIAL PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    channel_id  BIGINT NOT NULL,           -- where it was given
    author_id   BIGINT NOT NULL,
    text        TEXT NOT NULL CHECK (length(text) BETWEEN 1 AND 2000),
    status      TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'planned', 'done', 'declined')),
    by_dm       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX feedback_guild ON feedback (guild_id, status, id);

-- Staff replies and status changes, in order.
CREATE TABLE feedback_notes (
    id           BIGSERIAL PRIMARY KEY,
    feedback_id  BIGINT NOT NULL REFERENCES feedback (id) ON DELETE CASCADE,
    staff_id     BIGINT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('reply', 'status')),
    text         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Where feedback is posted: a server's channel (guild_id), or the bot owners' (guild_id 0).
CREATE TABLE feedback_channels (
    guild_id    BIGINT PRIMARY KEY,
    channel_id  BIGINT NOT NULL,
    set_by      BIGINT NOT NULL,
    set_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Members who asked to hear about their feedback by direct message.
CREATE TABLE feedback_dm (
    user_id  BIGINT PRIMARY KEY
);

-- A poll with buttons; closed once, by its job (polls.close), at `closes_at`.
CREATE TABLE polls (
    id          BIGSERIAL PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    channel_id  BIGINT NOT NULL,
    message_id  BIGINT,
    author_id   BIGINT NOT NULL,
    question    TEXT NOT NULL,
    options     TEXT[] NOT NULL,
    multiple    BOOLEAN NOT NULL DEFAULT FALSE,
    anonymous   BOOLEAN NOT NULL DEFAULT FALSE,
    closes_at   TIMESTAMPTZ NOT NULL,
    closed_at   TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per member per option they chose (a single-choice poll keeps one per member).
CREATE TABLE poll_votes (
    poll_id   BIGINT NOT NULL REFERENCES polls (id) ON DELETE CASCADE,
    option    SMALLINT NOT NULL,
    user_id   BIGINT NOT NULL,
    voted_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (poll_id, option, user_id)
);

-- Server statistics (bot/cogs/stats/, docs/stats.md): counter channels, report settings, and
-- the figures kept per server per day (in the server's own time zone), pruned after 400 days.

-- Each server's statistics settings: where and when its reports go.
CREATE TABLE stats_settings (
    guild_id           BIGINT PRIMARY KEY,
    category_id        BIGINT,                      -- the category `stats setup` made
    report_channel_id  BIGINT,                      -- NULL: no reports
    tz                 TEXT NOT NULL DEFAULT 'UTC', -- an IANA zone name
    report_hour        SMALLINT NOT NULL DEFAULT 9 CHECK (report_hour BETWEEN 0 AND 23),
    daily              BOOLEAN NOT NULL DEFAULT TRUE,
    weekly             BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A counter channel: one per server and kind. `shown` is the name it was last given and
-- `renames` the times of its last two renames, so that a restarted worker keeps to Discord's
-- 2 renames per 10 minutes.
CREATE TABLE stats_counters (
    guild_id    BIGINT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('members', 'online', 'bans')),
    channel_id  BIGINT NOT NULL UNIQUE,
    template    TEXT NOT NULL,
    shown       TEXT,
    renames     TIMESTAMPTZ[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (guild_id, kind)
);

-- One row per server per local day: about 60 bytes of data and 50 of tuple header and index.
CREATE TABLE stats_days (
    guild_id     BIGINT NOT NULL,
    day          DATE NOT NULL,
    joins        INTEGER NOT NULL DEFAULT 0,
    leaves       INTEGER NOT NULL DEFAULT 0,
    bans         INTEGER NOT NULL DEFAULT 0,
    messages     BIGINT NOT NULL DEFAULT 0,
    peak_online  INTEGER,                -- the highest approximate_presence_count seen
    members      INTEGER,                -- the last member count seen that day
    PRIMARY KEY (guild_id, day)
);

-- Messages per channel per day (for "most active channels").
CREATE TABLE stats_channel_days (
    guild_id    BIGINT NOT NULL,
    day         DATE NOT NULL,
    channel_id  BIGINT NOT NULL,
    messages    BIGINT NOT NULL,
    PRIMARY KEY (guild_id, day, channel_id)
);

-- Bans as they happened, for the report's names.
CREATE TABLE stats_bans (
    guild_id  BIGINT NOT NULL,
    day       DATE NOT NULL,
    user_id   BIGINT NOT NULL,
    name      TEXT NOT NULL,
    at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX stats_bans_day ON stats_bans (guild_id, day);

-- Reports sent: one per server per period (the job's key says the same; this keeps the
-- message id for `stats` and for the nonce check of a second attempt).
CREATE TABLE stats_reports (
    guild_id    BIGINT NOT NULL,
    period      TEXT NOT NULL,           -- 'daily:2026-12-03', 'weekly:2026-11-30'
    channel_id  BIGINT NOT NULL,
    message_id  BIGINT NOT NULL,
    late        BOOLEAN NOT NULL,
    sent_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (guild_id, period)
);

-- Leveling: XP awards (the system of record behind the Redis leaderboards), per-member totals,
-- active days (streaks), achievements, per-guild XP settings and level-role rewards.

-- Every XP change, once: message awards (award_id 'm:<message id>'), admin give/take/reset
-- ('a:<uuid>'). The flusher inserts with ON CONFLICT DO NOTHING and adds to xp_totals only
-- what it really inserted, so a batch written twice counts once.
CREATE TABLE xp_events (
    award_id    TEXT PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    amount      INTEGER NOT NULL,
    kind        TEXT NOT NULL DEFAULT 'message',
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX xp_events_time ON xp_events (created_at);
CREATE INDEX xp_events_member ON xp_events (guild_id, user_id, created_at);

CREATE TABLE xp_totals (
    guild_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    xp          BIGINT NOT NULL DEFAULT 0,
    messages    INTEGER NOT NULL DEFAULT 0,
    commands    INTEGER NOT NULL DEFAULT 0,
    -- The highest level announced (and rewarded); raised with a conditional UPDATE so only one
    -- process announces a level.
    level       INTEGER NOT NULL DEFAULT 0,
    best_roll   INTEGER NOT NULL DEFAULT 0,
    last_award  TIMESTAMPTZ,
    PRIMARY KEY (guild_id, user_id)
);

CREATE INDEX xp_totals_guild_xp ON xp_totals (guild_id, xp DESC);

-- UTC days on which a member earned message XP in a guild (activity streaks).
CREATE TABLE xp_days (
    guild_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    day         DATE NOT NULL,
    PRIMARY KEY (guild_id, user_id, day)
);

-- Names and avatars as last seen, so a rebuilt Redis (and a web page) can show them.
CREATE TABLE xp_profiles (
    user_id     BIGINT PRIMARY KEY,
    name        TEXT NOT NULL,
    avatar_url  TEXT,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE achievements (
    guild_id     BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    achievement  TEXT NOT NULL,
    unlocked_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (guild_id, user_id, achievement)
);

CREATE TABLE xp_settings (
    guild_id          BIGINT PRIMARY KEY,
    min_xp            INTEGER NOT NULL DEFAULT 15 CHECK (min_xp BETWEEN 0 AND 1000),
    max_xp            INTEGER NOT NULL DEFAULT 25 CHECK (max_xp BETWEEN 0 AND 1000),
    cooldown_seconds  INTEGER NOT NULL DEFAULT 60 CHECK (cooldown_seconds BETWEEN 0 AND 86400),
    -- here: the channel of the message; channel: announce_channel; dm; off
    announce          TEXT NOT NULL DEFAULT 'here'
                      CHECK (announce IN ('here', 'channel', 'dm', 'off')),
    announce_channel  BIGINT,
    -- where achievement unlocks are announced: same modes; 'channel' means announce_channel.
    -- A DM by default, so that achievements earned by commands don't interrupt a channel.
    achievements_announce TEXT NOT NULL DEFAULT 'dm'
                      CHECK (achievements_announce IN ('here', 'channel', 'dm', 'off')),
    -- {"<channel id>": multiplier}; 0 means no XP there
    channel_multipliers JSONB NOT NULL DEFAULT '{}'::jsonb,
    role_multipliers    JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- keep only the highest reward role (remove the previous ones) when a member levels up
    replace_rewards   BOOLEAN NOT NULL DEFAULT false,
    CHECK (min_xp <= max_xp)
);

CREATE TABLE xp_role_rewards (
    guild_id    BIGINT NOT NULL,
    level       INTEGER NOT NULL CHECK (level BETWEEN 1 AND 1000),
    role_id     BIGINT NOT NULL,
    PRIMARY KEY (guild_id, level)
);

-- Moderation (bot/cogs/moderation/, docs/moderation.md): numbered cases per server, private
-- notes on members, each server's moderation settings, and the bans the bot knows of (for ban
-- sync). A case is written in the transaction of its audit_log row; a tempban's end is a row
-- of `jobs` (kind 'moderation.unban'), written in that same transaction.

-- The last case number given out in each server: `UPDATE ... RETURNING` serialises two
-- moderators acting at once, so numbers are 1, 2, 3... with no gap and no repeat.
CREATE TABLE mod_case_numbers (
    guild_id  BIGINT PRIMARY KEY,
    last      INTEGER NOT NULL
);

CREATE TABLE mod_cases (
    guild_id      BIGINT NOT NULL,
    number        INTEGER NOT NULL,
    action        TEXT NOT NULL,         -- warn, kick, ban, tempban, softban, unban, timeout, ...
    target_id     BIGINT NOT NULL,
    moderator_id  BIGINT,                -- NULL: not known (a ban made in Discord, no audit log)
    reason        TEXT,
    duration_s    BIGINT,                -- timeout and tempban
    expires_at    TIMESTAMPTZ,           -- when a timeout or tempban ends
    cites         INTEGER[] NOT NULL DEFAULT '{}',  -- the warnings a threshold case applies
    details       JSONB NOT NULL DEFAULT '{}',      -- per action: deleted days, channel, role...
    audit_id      BIGINT,                -- its audit_log row
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ,           -- the reason was edited
    PRIMARY KEY (guild_id, number)
);

CREATE INDEX mod_cases_target ON mod_cases (guild_id, target_id, created_at DESC);

CREATE TABLE mod_notes (
    id          BIGSERIAL PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    target_id   BIGINT NOT NULL,
    author_id   BIGINT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX mod_notes_target ON mod_notes (guild_id, target_id, created_at DESC);

CREATE TABLE mod_settings (
    guild_id        BIGINT PRIMARY KEY,
    dm_members      BOOLEAN NOT NULL DEFAULT TRUE,  -- DM the reason before a kick or ban
    warn_expiry_s   BIGINT,                         -- NULL: warnings never expire
    thresholds      JSONB NOT NULL DEFAULT '[]'     -- [{count, action, seconds}]
);

-- Automod rules per server (mention spam, invite links, a word list; each with an action),
-- as JSON: bot/cogs/moderation/automod_rules.py's Automod.as_json().
CREATE TABLE mod_automod (
    guild_id  BIGINT PRIMARY KEY,
    rules     JSONB NOT NULL DEFAULT '{}'
);

-- The bans each server had at the last sync (start, GUILD_BAN_ADD/REMOVE): a ban found that
-- is not here was made outside the bot, and becomes a case.
CREATE TABLE mod_bans (
    guild_id   BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

-- Servers whose ban list has been read once: the first read records bans without cases.
CREATE TABLE mod_ban_syncs (
    guild_id   BIGINT PRIMARY KEY,
    synced_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

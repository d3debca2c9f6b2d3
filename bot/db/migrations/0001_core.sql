-- Core schema: guilds the bot is or was in, users it knows, and the moderation audit log.

CREATE TABLE guilds (
    id          BIGINT PRIMARY KEY,
    prefix      TEXT CHECK (prefix IS NULL OR char_length(prefix) BETWEEN 1 AND 16),
    settings    JSONB NOT NULL DEFAULT '{}'::jsonb,
    joined_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    left_at     TIMESTAMPTZ
);

CREATE TABLE users (
    id          BIGINT PRIMARY KEY,
    timezone    TEXT,
    settings    JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    actor_id    BIGINT NOT NULL,
    action      TEXT NOT NULL,
    channel_id  BIGINT,
    target_id   BIGINT,
    before      JSONB,
    after       JSONB,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX audit_log_guild_time ON audit_log (guild_id, created_at DESC);
CREATE INDEX audit_log_guild_target ON audit_log (guild_id, target_id, created_at DESC);

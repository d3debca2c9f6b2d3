-- XP imported from another leveling bot (`guildhouse leaderboards import`): the amount the
-- latest import gave each member of a guild. An import sets this amount; the member's XP
-- changes by the difference (an xp_events row of kind 'import'), so importing the same file
-- again changes nothing, and a corrected file changes only what it corrects.
CREATE TABLE xp_imports (
    guild_id     BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    xp           BIGINT NOT NULL CHECK (xp >= 0),
    -- how many times this member's imported amount changed; part of the award id of each
    -- change ('i:<guild>:<user>:<revision>:<file hash>'), so each change is one event
    revision     INTEGER NOT NULL DEFAULT 1,
    file_sha256  TEXT NOT NULL,
    imported_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (guild_id, user_id)
);

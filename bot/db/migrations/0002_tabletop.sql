-- Tabletop sessions: a table (GM, game system, last initiative order) per channel, its
-- combatants (players and NPCs), dice macros, and each user's recent rolls.

-- One tabletop "table" per channel: who runs it and which rules its initiative uses.
CREATE TABLE tabletop_tables (
    channel_id  BIGINT PRIMARY KEY,
    guild_id    BIGINT,
    gm_id       BIGINT,
    system      TEXT NOT NULL DEFAULT 'sr3'
                CHECK (system IN ('sr1', 'sr2', 'sr3', 'cp2020', 'cpr')),
    -- The last initiative roll, in acting order, as shown by `init list` and `init flip`.
    last_order  JSONB,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Players (user_id set, is_npc false) and NPCs of a channel's table. The players of a
-- channel are its GM's player list (reminders can go to them).
CREATE TABLE tabletop_combatants (
    channel_id  BIGINT NOT NULL REFERENCES tabletop_tables (channel_id) ON DELETE CASCADE,
    name        TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 32),
    user_id     BIGINT,
    is_npc      BOOLEAN NOT NULL DEFAULT false,
    dice        INTEGER NOT NULL DEFAULT 1 CHECK (dice BETWEEN 1 AND 10),
    modifier    INTEGER NOT NULL DEFAULT 0 CHECK (modifier BETWEEN -100 AND 100),
    added_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, name)
);

CREATE INDEX tabletop_combatants_players ON tabletop_combatants (channel_id, user_id)
    WHERE user_id IS NOT NULL AND NOT is_npc;

-- Macros: a user's own in one channel (scope_id = channel id, owner_id = the user), or a
-- server-wide one managed by moderators (scope_id = guild id, owner_id = 0).
CREATE TABLE dice_macros (
    scope       TEXT NOT NULL CHECK (scope IN ('channel', 'guild')),
    scope_id    BIGINT NOT NULL,
    owner_id    BIGINT NOT NULL,
    name        TEXT NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    expression  TEXT NOT NULL CHECK (char_length(expression) BETWEEN 1 AND 300),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, scope_id, owner_id, name)
);

-- The last rolls of each user in each channel (pruned to the newest few on insert).
CREATE TABLE roll_history (
    id          BIGSERIAL PRIMARY KEY,
    channel_id  BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    guild_id    BIGINT,
    expression  TEXT NOT NULL,
    summary     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX roll_history_user_channel ON roll_history (user_id, channel_id, id DESC);

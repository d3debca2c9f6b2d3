-- Points (a double-entry ledger per server) and predictions (pari-mutuel markets paid from it).
-- See docs/predictions.md and bot/cogs/points/ledger.py.

-- An account per server: a member ('u:<user id>'), a prediction's pool ('p:<prediction id>'),
-- the server's mint ('mint': every grant comes from it, so its balance is minus all points
-- ever minted) and the burn ('burn': points taken out of circulation). The balance is kept in
-- step with the entries in the same transaction (ledger.post); members and pools never go
-- below zero, and the database, not only the code, says so.
CREATE TABLE points_accounts (
    guild_id    BIGINT NOT NULL,
    account     TEXT NOT NULL CHECK (account ~ '^(u:[0-9]+|p:[0-9]+|mint|burn)$'),
    balance     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (guild_id, account),
    CONSTRAINT points_no_overdraft CHECK (account IN ('mint', 'burn') OR balance >= 0)
);

CREATE INDEX points_accounts_rank ON points_accounts (guild_id, balance DESC)
    WHERE account LIKE 'u:%';

-- One ledger transaction: applied once per (guild, key). The key is what makes a retry, a
-- double click or a redelivery harmless: the interaction id of a bet, 'daily:<user>:<day>',
-- 'chat:<message id>', 'resolve:<prediction id>', ...
CREATE TABLE points_tx (
    id          BIGSERIAL PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    key         TEXT NOT NULL CHECK (char_length(key) BETWEEN 1 AND 100),
    kind        TEXT NOT NULL,
    actor_id    BIGINT,
    memo        TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (guild_id, key)
);

CREATE TABLE points_entries (
    tx_id       BIGINT NOT NULL REFERENCES points_tx (id),
    guild_id    BIGINT NOT NULL,
    account     TEXT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (tx_id, account)
);

CREATE INDEX points_entries_account ON points_entries (guild_id, account, tx_id DESC);

-- Double entry, enforced at commit: the entries of a transaction sum to zero.
CREATE FUNCTION points_tx_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total NUMERIC;
BEGIN
    SELECT coalesce(sum(amount), 0) INTO total FROM points_entries WHERE tx_id = NEW.tx_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'points transaction % does not balance (sum %)', NEW.tx_id, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER points_entries_balanced
    AFTER INSERT OR UPDATE ON points_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION points_tx_balanced();

-- Per-server settings of points and predictions (defaults: the column defaults).
CREATE TABLE points_settings (
    guild_id        BIGINT PRIMARY KEY,
    daily_amount    INTEGER NOT NULL DEFAULT 100 CHECK (daily_amount BETWEEN 0 AND 1000000),
    streak_bonus    INTEGER NOT NULL DEFAULT 10 CHECK (streak_bonus BETWEEN 0 AND 100000),
    streak_max      INTEGER NOT NULL DEFAULT 7 CHECK (streak_max BETWEEN 1 AND 365),
    chat_points     INTEGER NOT NULL DEFAULT 0 CHECK (chat_points BETWEEN 0 AND 1000),
    min_bet         BIGINT NOT NULL DEFAULT 1 CHECK (min_bet >= 1),
    max_bet         BIGINT NOT NULL DEFAULT 1000000 CHECK (max_bet >= 1),
    max_stake       BIGINT NOT NULL DEFAULT 1000000 CHECK (max_stake >= 1),
    allow_switch    BOOLEAN NOT NULL DEFAULT false,
    creator_role    BIGINT,
    vote_enabled    BOOLEAN NOT NULL DEFAULT false,
    vote_min        INTEGER NOT NULL DEFAULT 2 CHECK (vote_min BETWEEN 1 AND 1000),
    refund_hours    INTEGER NOT NULL DEFAULT 120 CHECK (refund_hours BETWEEN 1 AND 8760),
    CHECK (min_bet <= max_bet)
);

-- The daily claim's streak: the last UTC day claimed and the streak it made.
CREATE TABLE points_daily (
    guild_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    last_day    DATE NOT NULL,
    streak      INTEGER NOT NULL CHECK (streak >= 1),
    PRIMARY KEY (guild_id, user_id)
);

-- open -> closed (betting locked, on time) -> resolving (outcome chosen, payout pending) ->
-- resolved; open/closed -> void (refunded by a moderator) or refunded (automatically,
-- refund_hours after close). Every step is one conditional UPDATE: it happens once.
CREATE TABLE predictions (
    id          BIGSERIAL PRIMARY KEY,
    guild_id    BIGINT NOT NULL,
    channel_id  BIGINT NOT NULL,
    message_id  BIGINT,
    creator_id  BIGINT NOT NULL,
    question    TEXT NOT NULL CHECK (char_length(question) BETWEEN 1 AND 500),
    options     TEXT[] NOT NULL CHECK (cardinality(options) BETWEEN 2 AND 10),
    category    TEXT CHECK (category IS NULL OR char_length(category) BETWEEN 1 AND 32),
    status      TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'closed', 'resolving', 'resolved', 'void', 'refunded')),
    winner      INTEGER,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    closes_at   TIMESTAMPTZ NOT NULL,
    closed_at   TIMESTAMPTZ,
    settled_at  TIMESTAMPTZ,
    settled_by  BIGINT,
    announced   BOOLEAN NOT NULL DEFAULT false
);

CREATE INDEX predictions_guild ON predictions (guild_id, id DESC);
CREATE INDEX predictions_due ON predictions (closes_at) WHERE status = 'open';
CREATE INDEX predictions_closed ON predictions (closed_at) WHERE status IN ('closed', 'resolving');

-- A member's stake on one prediction: one option (switching moves it, where allowed).
CREATE TABLE prediction_bets (
    prediction_id   BIGINT NOT NULL REFERENCES predictions (id),
    user_id         BIGINT NOT NULL,
    option          INTEGER NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    first_at        TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    payout          BIGINT,
    PRIMARY KEY (prediction_id, user_id)
);

CREATE TABLE prediction_votes (
    prediction_id   BIGINT NOT NULL REFERENCES predictions (id),
    user_id         BIGINT NOT NULL,
    option          INTEGER NOT NULL,
    PRIMARY KEY (prediction_id, user_id)
);

-- Members who want a DM when a prediction they bet on is settled (`predict notify on`).
CREATE TABLE prediction_notify (
    user_id     BIGINT PRIMARY KEY
);

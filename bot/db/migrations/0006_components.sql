-- Persistent components (bot/components/): buttons, menus and forms that any worker answers,
-- before and after a restart. A component's custom_id names its handler and carries either
-- its whole state or the id of a row here; see docs in bot/components/__init__.py.

-- The state of components whose state does not fit in a custom_id (a paginator's pages, a
-- bet's details), keyed by the id the custom_id carries. A row is kept until it expires; a
-- click after that finds nothing and is answered "this has expired".
CREATE TABLE component_state (
    id          TEXT PRIMARY KEY CHECK (char_length(id) BETWEEN 8 AND 32),
    handler     TEXT NOT NULL,           -- the handler's name, as in the custom_id
    owner_id    BIGINT,                  -- whoever it belongs to (NULL: nobody in particular)
    data        JSONB,                   -- the handler's state (NULL: it needs none)
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX component_state_expires ON component_state (expires_at);

-- Components that act once (a reroll, a confirmation): the first press inserts its key (the
-- message and the component's custom_id), any later one (a double click, a retry, another
-- worker) finds it taken. In PostgreSQL rather than Redis because it must outlive a Redis
-- wipe as long as the component can still be pressed: it is kept until then.
CREATE TABLE component_claims (
    key         TEXT PRIMARY KEY,
    claimed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX component_claims_expires ON component_claims (expires_at);

-- Ending sessions: a user's tokens and screen sessions that started at or before
-- sessions_revoked_at (Unix seconds) are refused; revoked_tokens holds single tokens ended by
-- sign-out until they would have expired anyway.
ALTER TABLE users ADD COLUMN sessions_revoked_at INTEGER;

CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    revoked_at TEXT NOT NULL
);

CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

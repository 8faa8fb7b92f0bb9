-- Sign-in throttling (appliance/auth/throttle.py). A failed password counts against the pair
-- (account name, client address): the lock only stops that pair, so the right password from
-- another address still signs in. Every failure also counts against the address, which is slowed
-- down, then refused for a while, whatever account names it tries.

CREATE TABLE login_failures (
    username TEXT NOT NULL COLLATE NOCASE,
    client TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (username, client)
);

CREATE TABLE login_clients (
    client TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    window_start TEXT NOT NULL,
    next_allowed_at TEXT,
    blocked_until TEXT,
    updated_at TEXT NOT NULL
);

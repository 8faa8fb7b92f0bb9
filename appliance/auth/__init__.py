"""Users, roles, passwords (Argon2), JWT access tokens and per-route role checks."""

"""Versioned schema migrations for the SQLite engine. Append only: never edit a released step."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: tenants, keys, keyring, OTPs, messages
    """
    CREATE TABLE keyring (
        key_id INTEGER PRIMARY KEY,
        wrapped BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        countries TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE api_keys (
        key_hash BLOB PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        scopes TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE otps (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        phone_enc BLOB NOT NULL,
        phone_hmac BLOB NOT NULL,
        country TEXT NOT NULL,
        code_hash BLOB NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        verified_at REAL,
        message_id TEXT NOT NULL,
        locale TEXT NOT NULL,
        template TEXT NOT NULL
    );
    CREATE INDEX otps_by_phone ON otps(tenant_id, phone_hmac);
    CREATE INDEX otps_by_created ON otps(created_at);
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        phone_enc BLOB NOT NULL,
        phone_hmac BLOB NOT NULL,
        country TEXT NOT NULL,
        sender TEXT NOT NULL,
        payload_enc BLOB,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        not_before REAL NOT NULL,
        expires_at REAL,
        otp_id TEXT,
        locale TEXT,
        template TEXT,
        route TEXT,
        route_reason TEXT,
        carrier TEXT,
        carrier_message_id TEXT,
        error_code TEXT,
        error_reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        segments INTEGER,
        tried_routes TEXT NOT NULL DEFAULT '',
        claimed_by TEXT,
        claimed_until REAL
    );
    CREATE INDEX messages_due ON messages(status, not_before);
    CREATE INDEX messages_by_carrier_id ON messages(carrier, carrier_message_id);
    CREATE INDEX messages_by_phone ON messages(tenant_id, phone_hmac);
    """,
]

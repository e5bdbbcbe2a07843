"""Versioned schema migrations for the SQLite engine. Append only: never edit a released step.

Each step is a script of statements separated by a semicolon at the end of a line (a trigger keeps
its inner semicolons mid-line)."""

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
    # 2: privacy — audit chain, data-subject requests, consent, conversion events, residency copies
    """
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL,
        prev BLOB NOT NULL,
        mac BLOB NOT NULL
    );
    CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    CREATE TABLE privacy_requests (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject_hmac BLOB NOT NULL,
        subject_masked TEXT NOT NULL,
        received_at REAL NOT NULL,
        due_at REAL NOT NULL,
        completed_at REAL,
        result TEXT
    );
    CREATE INDEX privacy_requests_by_tenant ON privacy_requests(tenant_id, received_at);
    CREATE TABLE consent (
        tenant_id TEXT NOT NULL,
        phone_hmac BLOB NOT NULL,
        status TEXT NOT NULL,
        source TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (tenant_id, phone_hmac)
    );
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        message_id TEXT,
        otp_id TEXT,
        event TEXT NOT NULL,
        country TEXT NOT NULL,
        route TEXT,
        phone_hmac BLOB,
        at REAL NOT NULL
    );
    CREATE INDEX events_by_phone ON events(tenant_id, phone_hmac);
    CREATE INDEX events_by_at ON events(at);
    CREATE TABLE residency_copies (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        region TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        phone_hmac BLOB NOT NULL,
        phone_enc BLOB NOT NULL,
        country TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX copies_by_phone ON residency_copies(tenant_id, phone_hmac);
    CREATE INDEX messages_by_created ON messages(created_at);
    """,
    # 3: tracked short links of marketing messages (bound to the message, never to the number)
    """
    CREATE TABLE links (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        url_enc BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX links_by_message ON links(message_id);
    CREATE INDEX links_by_created ON links(created_at);
    """,
    # 4: sender-ID registrations and documents, brand profiles, tenant settings, webhooks, brand class
    """
    CREATE TABLE sender_registrations (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX sender_registrations_by_tenant ON sender_registrations(tenant_id, created_at);
    CREATE TABLE sender_documents (
        id TEXT PRIMARY KEY,
        registration_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        code TEXT NOT NULL,
        filename TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        content_enc BLOB NOT NULL,
        uploaded_at REAL NOT NULL
    );
    CREATE INDEX sender_documents_by_registration ON sender_documents(registration_id);
    CREATE TABLE brand_profiles (
        tenant_id TEXT PRIMARY KEY,
        profile TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    ALTER TABLE tenants ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE tenant_webhooks (
        tenant_id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        secret_enc BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    ALTER TABLE messages ADD COLUMN brand_class TEXT NOT NULL DEFAULT 'international';
    CREATE INDEX audit_by_tenant_target ON audit(tenant_id, target);
    ALTER TABLE otps ADD COLUMN challenged INTEGER NOT NULL DEFAULT 0;
    """,
    # status callbacks waiting for delivery (gateway.webhooks): no personal data beyond a masked number
    """
    CREATE TABLE webhook_outbox (
        event_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        due REAL NOT NULL,
        claimed_by TEXT,
        claimed_until REAL NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE INDEX webhook_outbox_claimable ON webhook_outbox(claimed_until, due);
    """,
]

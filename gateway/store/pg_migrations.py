"""Versioned schema migrations for the PostgreSQL engine. Append only: never edit a released step.

Each step is one script (sent as one simple query, so it may hold many statements); they run inside
the schema named by the connection's ``search_path``, in one transaction under an advisory lock
(``gateway.store.pg.migrate``). Step 1 is the SQLite engine's five steps at once, in PostgreSQL types:
sealed values and hashes ``bytea``, times ``double precision`` epoch seconds, tenant settings ``jsonb``
(merged in one statement)."""

from __future__ import annotations

PG_MIGRATIONS: list[str] = [
    # 1: every table of SQLite's migrations 1-5
    """
    CREATE TABLE keyring (
        key_id integer PRIMARY KEY,
        wrapped bytea NOT NULL,
        created_at double precision NOT NULL
    );
    CREATE TABLE tenants (
        id text PRIMARY KEY,
        name text NOT NULL,
        countries text NOT NULL,
        created_at double precision NOT NULL,
        settings jsonb NOT NULL DEFAULT '{}'
    );
    CREATE TABLE api_keys (
        key_hash bytea PRIMARY KEY,
        tenant_id text NOT NULL REFERENCES tenants(id),
        scopes text NOT NULL,
        created_at double precision NOT NULL,
        revoked_at double precision
    );
    CREATE TABLE otps (
        id text PRIMARY KEY,
        tenant_id text NOT NULL,
        phone_enc bytea NOT NULL,
        phone_hmac bytea NOT NULL,
        country text NOT NULL,
        code_hash bytea NOT NULL,
        status text NOT NULL,
        created_at double precision NOT NULL,
        expires_at double precision NOT NULL,
        verified_at double precision,
        message_id text NOT NULL,
        locale text NOT NULL,
        template text NOT NULL,
        challenged boolean NOT NULL DEFAULT false
    );
    CREATE INDEX otps_by_phone ON otps(tenant_id, phone_hmac);
    CREATE INDEX otps_by_created ON otps(created_at);
    CREATE TABLE messages (
        id text PRIMARY KEY,
        tenant_id text NOT NULL,
        kind text NOT NULL,
        phone_enc bytea NOT NULL,
        phone_hmac bytea NOT NULL,
        country text NOT NULL,
        sender text NOT NULL,
        payload_enc bytea,
        status text NOT NULL,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        not_before double precision NOT NULL,
        expires_at double precision,
        otp_id text,
        locale text,
        template text,
        route text,
        route_reason text,
        carrier text,
        carrier_message_id text,
        error_code text,
        error_reason text,
        attempts integer NOT NULL DEFAULT 0,
        segments integer,
        tried_routes text NOT NULL DEFAULT '',
        claimed_by text,
        claimed_until double precision,
        brand_class text NOT NULL DEFAULT 'international'
    );
    CREATE INDEX messages_due ON messages(status, not_before);
    CREATE INDEX messages_by_carrier_id ON messages(carrier, carrier_message_id);
    CREATE INDEX messages_by_phone ON messages(tenant_id, phone_hmac);
    CREATE INDEX messages_by_created ON messages(created_at);
    CREATE TABLE audit (
        seq bigint PRIMARY KEY,
        at double precision NOT NULL,
        actor text NOT NULL,
        tenant_id text NOT NULL,
        action text NOT NULL,
        target text NOT NULL,
        details text NOT NULL,
        prev bytea NOT NULL,
        mac bytea NOT NULL
    );
    CREATE INDEX audit_by_tenant_target ON audit(tenant_id, target);
    CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'append-only'; END $$;
    CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
        FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    CREATE TABLE privacy_requests (
        id text PRIMARY KEY,
        tenant_id text NOT NULL,
        kind text NOT NULL,
        subject_hmac bytea NOT NULL,
        subject_masked text NOT NULL,
        received_at double precision NOT NULL,
        due_at double precision NOT NULL,
        completed_at double precision,
        result text
    );
    CREATE INDEX privacy_requests_by_tenant ON privacy_requests(tenant_id, received_at);
    CREATE TABLE consent (
        tenant_id text NOT NULL,
        phone_hmac bytea NOT NULL,
        status text NOT NULL,
        source text NOT NULL,
        updated_at double precision NOT NULL,
        PRIMARY KEY (tenant_id, phone_hmac)
    );
    CREATE TABLE events (
        id text PRIMARY KEY,
        tenant_id text NOT NULL,
        message_id text,
        otp_id text,
        event text NOT NULL,
        country text NOT NULL,
        route text,
        phone_hmac bytea,
        at double precision NOT NULL
    );
    CREATE INDEX events_by_phone ON events(tenant_id, phone_hmac);
    CREATE INDEX events_by_at ON events(at);
    CREATE TABLE residency_copies (
        id text PRIMARY KEY,
        kind text NOT NULL,
        region text NOT NULL,
        tenant_id text NOT NULL,
        phone_hmac bytea NOT NULL,
        phone_enc bytea NOT NULL,
        country text NOT NULL,
        created_at double precision NOT NULL
    );
    CREATE INDEX copies_by_phone ON residency_copies(tenant_id, phone_hmac);
    CREATE TABLE links (
        id text PRIMARY KEY,
        tenant_id text NOT NULL,
        message_id text NOT NULL,
        url_enc bytea NOT NULL,
        created_at double precision NOT NULL
    );
    CREATE INDEX links_by_message ON links(message_id);
    CREATE INDEX links_by_created ON links(created_at);
    CREATE TABLE sender_registrations (
        id text PRIMARY KEY,
        tenant_id text NOT NULL,
        sender text NOT NULL,
        data text NOT NULL,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL
    );
    CREATE INDEX sender_registrations_by_tenant ON sender_registrations(tenant_id, created_at);
    CREATE TABLE sender_documents (
        id text PRIMARY KEY,
        registration_id text NOT NULL,
        tenant_id text NOT NULL,
        code text NOT NULL,
        filename text NOT NULL,
        content_type text NOT NULL,
        size integer NOT NULL,
        content_enc bytea NOT NULL,
        uploaded_at double precision NOT NULL
    );
    CREATE INDEX sender_documents_by_registration ON sender_documents(registration_id);
    CREATE TABLE brand_profiles (
        tenant_id text PRIMARY KEY,
        profile text NOT NULL,
        updated_at double precision NOT NULL
    );
    CREATE TABLE tenant_webhooks (
        tenant_id text PRIMARY KEY,
        url text NOT NULL,
        secret_enc bytea NOT NULL,
        created_at double precision NOT NULL
    );
    CREATE TABLE webhook_outbox (
        event_id text PRIMARY KEY,
        tenant_id text NOT NULL,
        payload text NOT NULL,
        attempt integer NOT NULL DEFAULT 0,
        due double precision NOT NULL,
        claimed_by text,
        claimed_until double precision NOT NULL DEFAULT 0,
        created_at double precision NOT NULL
    );
    CREATE INDEX webhook_outbox_claimable ON webhook_outbox(claimed_until, due);
    CREATE INDEX webhook_outbox_by_holder ON webhook_outbox(claimed_by);
    """,
]

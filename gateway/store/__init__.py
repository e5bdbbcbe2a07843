"""The durable store: the ``Store`` interface and its engines (SQLite, PostgreSQL), each assembled from
area mixins."""

from gateway.store.base import Store
from gateway.store.pg_messages import PgMessagesMixin
from gateway.store.pg_privacy import PgPrivacyMixin
from gateway.store.pg_senderid import PgSenderIdMixin
from gateway.store.pg_webhooks import PgWebhooksMixin
from gateway.store.shared import SharedQueries
from gateway.store.sqlite_messages import MessagesMixin
from gateway.store.sqlite_privacy import PrivacyMixin, RetentionPolicy
from gateway.store.sqlite_senderid import SenderIdMixin
from gateway.store.sqlite_webhooks import WebhooksMixin


class SqliteStore(MessagesMixin, PrivacyMixin, SenderIdMixin, WebhooksMixin, SharedQueries):
    """Every area of the store on one SQLite database file (one region)."""


class PgStore(PgMessagesMixin, PgPrivacyMixin, PgSenderIdMixin, PgWebhooksMixin, SharedQueries):
    """Every area of the store in one PostgreSQL schema (one region)."""


__all__ = ["PgStore", "RetentionPolicy", "SqliteStore", "Store"]

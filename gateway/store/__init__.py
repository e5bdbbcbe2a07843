"""The durable store: the ``Store`` interface and its SQLite engine, assembled from area mixins."""

from gateway.store.base import Store
from gateway.store.sqlite_messages import MessagesMixin
from gateway.store.sqlite_privacy import PrivacyMixin, RetentionPolicy
from gateway.store.sqlite_senderid import SenderIdMixin
from gateway.store.sqlite_webhooks import WebhooksMixin


class SqliteStore(MessagesMixin, PrivacyMixin, SenderIdMixin, WebhooksMixin):
    """Every area of the store on one SQLite database file (one region)."""


__all__ = ["RetentionPolicy", "SqliteStore", "Store"]

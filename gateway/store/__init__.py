"""The durable store: the ``Store`` interface and its SQLite engine, assembled from area mixins."""

from gateway.store.base import Store
from gateway.store.sqlite_messages import MessagesMixin


class SqliteStore(MessagesMixin):
    """Every area of the store on one SQLite database file (one region)."""


__all__ = ["SqliteStore", "Store"]

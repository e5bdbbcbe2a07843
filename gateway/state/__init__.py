"""Hot shared state: resend cooldowns, per-number limits, verify-attempt counters.

``MemoryState`` serves the embedded single-process default; ``RedisState`` (``REDIS_URL``) lets many
gateway processes share it, each operation one atomic Lua script. ``FallbackState`` wraps Redis so an
outage degrades the resend gate to process-local limits (logged once per transition and counted)
instead of taking the API down, while verify attempts fail closed (:class:`StateUnavailable`).
"""

from gateway.state.base import GateResult, StateBackend, StateUnavailable
from gateway.state.memory import MemoryState
from gateway.state.redis import FallbackState, RedisState, connect_redis, redis_client

__all__ = [
    "FallbackState",
    "GateResult",
    "MemoryState",
    "RedisState",
    "StateBackend",
    "StateUnavailable",
    "connect_redis",
    "redis_client",
]

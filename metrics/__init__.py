"""Prometheus instruments, collectors and fill-back/conversion logic."""

from metrics.instruments import Instruments, create_instruments

__all__ = ["Instruments", "create_instruments"]

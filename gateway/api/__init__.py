"""HTTP handlers, thin: parse, authorise, call a service, render. Every route is declared once in
``ROUTES`` with what the OpenAPI document needs to describe it."""

from gateway.api.registry import ROUTES, Endpoint

__all__ = ["ROUTES", "Endpoint"]

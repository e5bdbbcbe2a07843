"""smsgw gateway: HTTP API, configuration, storage, dispatch; wires carriers, antifraud, senderid, metrics."""

__version__ = "0.1.0"

"""Privacy by design: encryption at rest, keyed look-ups, masking."""

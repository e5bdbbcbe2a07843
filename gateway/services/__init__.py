"""Use cases, one module each: plain async functions over the context, no HTTP here."""

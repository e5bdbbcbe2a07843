"""antifraud package."""

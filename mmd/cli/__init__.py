"""User-facing commands."""

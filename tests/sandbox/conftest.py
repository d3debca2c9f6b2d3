"""Fixtures for the sandbox's own tests (none shared yet)."""

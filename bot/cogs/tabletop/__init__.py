"""Tabletop sessions: dice, initiative."""

"""CLI command groups: each parses, calls one package function, and renders (rich or --json)."""

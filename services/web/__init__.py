"""The dashboard: a static single-page app and its session endpoint (README.md)."""

"""Browser-facing pages served by the app itself (no build step)."""

"""The browser tracker. Its sources are in src/, built into dist/tracker.js by `npm run build`
(see ARCHITECTURE.md); dist/ is committed, so serving it needs no node."""

from __future__ import annotations

from pathlib import Path

__all__ = ["GZIP_LIMIT", "TRACKER_PATH"]

TRACKER_PATH = Path(__file__).parent / "dist" / "tracker.js"
GZIP_LIMIT = 2048  # bytes: the most tracker.js may weigh gzipped (level 9), as the collector serves it

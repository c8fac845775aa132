"""The browser tracker. Its sources are in src/, built into dist/tracker.js by `npm run build`
(see ARCHITECTURE.md); dist/ is committed, so serving it needs no node."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DISCOVERY_PATH", "GZIP_LIMIT", "TRACKER_PATH"]

TRACKER_PATH = Path(__file__).parent / "dist" / "tracker.js"
# Step discovery's counter, loaded by the tracker only while a site's discovery is on (src/discovery.js)
DISCOVERY_PATH = Path(__file__).parent / "dist" / "discovery.js"
GZIP_LIMIT = 2048  # bytes: the most tracker.js may weigh gzipped (level 9), as the collector serves it

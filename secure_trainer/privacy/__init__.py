"""Privacy tools applied to data on its way in: PII scan, image metadata, sanitizer, faces, pseudonyms.

Nothing in this package logs or raises with a file name, a path or caption text.
"""

from __future__ import annotations

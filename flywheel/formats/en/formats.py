"""The English date formats of Flywheel's pages: the admin's own date columns read as :mod:`flywheel.formatting`.

Django's admin writes a date field of a list or a read-only page through these formats, so
``created_at`` reads ``2026-12-05 16:35`` there too, not ``Dec. 5, 2026, 4:35 p.m.``.
"""

from flywheel.formatting import DATE_FORMAT, DATETIME_FORMAT

SHORT_DATE_FORMAT = DATE_FORMAT
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
__all__ = ["DATETIME_FORMAT", "DATE_FORMAT", "SHORT_DATETIME_FORMAT", "SHORT_DATE_FORMAT"]

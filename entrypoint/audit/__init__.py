"""Audit: kernel rules through auditctl, the hash-chained app log, and the rules a run loads."""

"""Untrusted image decoding in a separate, unprivileged process (`data import|sanitize`)."""

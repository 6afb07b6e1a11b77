"""Vault (or OpenBao): client, settings, token renewal, the local dev server, and the auth methods
in `auth/`.
"""

"""entrypoint: container init and CLI (lifecycle, Vault, workspace, audit, wipe, policy)."""

"""The encrypted workspace: gocryptfs, the key state machine in Vault, mount inspection, read
grants for the training user.
"""

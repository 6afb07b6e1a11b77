"""The training loop and its parts: setup, step, noise, optimizers, checkpoints, resumable state,
progress.
"""

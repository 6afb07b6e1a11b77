"""The run lifecycle: phase order and teardown, recovery, run marker, signals, the trainer child,
privilege drop, wipe.
"""

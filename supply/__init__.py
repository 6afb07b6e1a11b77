"""Supply-chain tools run by `make scan` on the host (never shipped in the image).

Offline vulnerability matching against a local OSV directory (`osv_scan`). Nothing here may
reach the network or import the trainer packages.
"""

"""What an app should be: names, the pure renderers and their registry, drift, status.

Pure: no request, no clock of its own, no thread. Imports only ``api`` (and itself).
"""

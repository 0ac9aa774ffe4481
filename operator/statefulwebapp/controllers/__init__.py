"""The reconcilers: what is watched, how each app and restore is brought to its spec.

They read ``specs`` for what should be and use ``runtime`` to make it so.
"""

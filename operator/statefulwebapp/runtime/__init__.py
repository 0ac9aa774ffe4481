"""The machinery any operator needs: API client, informers and stores, work queue, lease, metrics.

Knows no resource of ours: imports nothing of ``specs`` or ``controllers``.
"""

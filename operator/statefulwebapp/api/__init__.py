"""The API we serve and speak: the typed spec of each resource, object shapes, the kinds' locations.

The bottom layer: imports nothing else of the package.
"""

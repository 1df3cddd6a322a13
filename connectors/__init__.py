"""Connectors: one module per kind of source, registered in `connectors.registry`."""

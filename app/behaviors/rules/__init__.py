"""The rule engine: one module per calculation method, caps, and a registry. Pure functions, integers only."""

"""Live updates: graphql-transport-ws subscriptions fed by PostgreSQL LISTEN/NOTIFY (ADR 0012)."""

"""Alembic migrations of the server schema; `agentdesk.server.db.migrate` runs them."""

"""All tables' metadata in one place (Alembic autogenerate and the schema tests import it)."""

from sqlmodel import SQLModel

import app.tenants.models  # noqa: F401  (registers the tables)

metadata = SQLModel.metadata

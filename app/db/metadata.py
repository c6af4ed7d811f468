"""All tables' metadata in one place (Alembic autogenerate and the schema tests import it)."""

from sqlmodel import SQLModel

import app.accounts.models  # noqa: F401  (registers the tables)
import app.behaviors.models  # noqa: F401
import app.graphql.models  # noqa: F401
import app.ledger.models  # noqa: F401
import app.market.models  # noqa: F401
import app.rewards.models  # noqa: F401
import app.tenants.models  # noqa: F401

metadata = SQLModel.metadata

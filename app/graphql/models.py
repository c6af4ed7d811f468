"""Tables of the API layer: the trusted documents registered per city."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Column, DateTime, Text, func
from sqlmodel import Field, SQLModel


class TrustedDocumentRow(SQLModel, table=True):
    """An operation document a city's clients may send by hash (`carbon-inclusive documents register`).

    Keyed by the SHA-256 of the exact text, so a row never changes meaning; registering the same text
    again changes nothing. Append-only: the app role may read and insert, never update or delete."""

    __tablename__ = "trusted_documents"
    __table_args__ = (CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),)

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", primary_key=True)
    sha256: str = Field(sa_column_kwargs={"primary_key": True}, sa_type=Text)
    name: str = Field(sa_column=Column(Text, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    registered_by: str = Field(sa_column=Column(Text, nullable=False))
    registered_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False,
                                                     server_default=func.now()))

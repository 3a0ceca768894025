"""Schema migrations with Alembic, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from fhir_server.store.row_security import grant_scope


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("fhir_server.store") / "migrations"))
    return config


def upgrade(engine: Engine) -> None:
    config = _config()
    with engine.connect() as connection:
        connection.info["read_only"] = False
        with connection.begin():
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            # The row-security role's privileges on every table, those of later migrations too
            # (migration 0013); a database user that may not use the role fails here, at startup.
            grant_scope(connection)


def revision(engine: Engine, message: str) -> None:
    """Developer helper: autogenerate a migration against a database at head."""
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)

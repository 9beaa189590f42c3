"""What both services share: the schema of each store, the code that applies it, and the
settings that say which store to use. Neither ``ingest`` nor ``api`` imports the other."""

from sql.errors import SettingsError, StoreError
from sql.questdb_schema import apply_questdb_schema
from sql.settings import Secret, StoreSettings, load_environment, settings_from_env
from sql.sqlite_schema import apply_sqlite_schema, sqlite_missing_columns

__all__ = [
    "Secret",
    "SettingsError",
    "StoreError",
    "StoreSettings",
    "apply_questdb_schema",
    "apply_sqlite_schema",
    "load_environment",
    "settings_from_env",
    "sqlite_missing_columns",
]

"""inbound_messages: how a message that could not be ingested ended.

A message ends `failed` instead of being retried: `reason` says why (`recipients_gone`:
no recipient PAL exists any more; `max_attempts`: it failed MAX_INGEST_ATTEMPTS times),
`last_error` keeps the last attempt's error (bounded) and `failed_at` when it ended.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Text, Timestamptz, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-30T08:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "inbound_messages: reason, last_error and failed_at of failed messages"


def _params(**extra) -> dict:
    return {
        "default": None,
        "null": True,
        "primary_key": False,
        "unique": False,
        "index": False,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
        **extra,
    }


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="pal", description=DESCRIPTION)
    for name, column_class, params in (
        ("reason", Varchar, _params(length=40)),
        ("last_error", Text, _params()),
        ("failed_at", Timestamptz, _params()),
    ):
        manager.add_column(
            table_class_name="InboundMessage",
            tablename="inbound_messages",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )
    return manager

"""The full pipeline: sealed API keys on pals, the meeting's notes on conversations.

pals.secrets holds layers.llm / layers.tts API keys encrypted (app/secret_box.py).
conversations.notes_* hold the notes a full-pipeline PAL writes when it leaves.
pipeline_mode is now `full` or `echo`: the never-implemented `audio` and `text` become `echo`.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import JSONB, Text, Timestamptz, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-30T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "pals.secrets; conversations.notes_status/notes/notes_error/notes_at; pipeline modes"


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


async def _narrow_modes() -> None:
    from piccolo_conf import DB

    await DB.run_ddl("UPDATE pals SET pipeline_mode = 'echo' WHERE pipeline_mode IN ('audio', 'text')")


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="pal", description=DESCRIPTION)
    columns = (
        ("Pal", "pals", "secrets", Text, _params()),
        ("Conversation", "conversations", "notes_status", Varchar, _params(length=10, default="none", null=False)),
        ("Conversation", "conversations", "notes", JSONB, _params()),
        ("Conversation", "conversations", "notes_error", Text, _params()),
        ("Conversation", "conversations", "notes_at", Timestamptz, _params()),
    )
    for class_name, table, name, column_class, params in columns:
        manager.add_column(
            table_class_name=class_name, tablename=table, column_name=name, db_column_name=name,
            column_class_name=column_class.__name__, column_class=column_class, params=params, schema=None,
        )
    manager.add_raw(_narrow_modes)
    return manager

"""transcript_entries: what was said and written in a conversation's meeting (media bridge).

One row per final caption, chat message or line the PAL spoke, read per conversation in
insertion order (index on (conversation, id)); deleted with its conversation.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import Boolean, ForeignKey, Serial, Text, Timestamptz, Varchar
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table

ID = "2026-11-30T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "transcript_entries: the transcript of a conversation"


class Conversation(Table, tablename="conversations", schema=None):
    id = Serial(null=False, primary_key=True, unique=False, index=False, index_method=IndexMethod.btree,
                choices=None, db_column_name="id", secret=False)


def _params(**extra) -> dict:
    return {
        "null": False,
        "primary_key": False,
        "unique": False,
        "index": False,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
        **extra,
    }


class _Manager(MigrationManager):
    """Piccolo runs `add_raw` callbacks before it creates tables: the index comes after."""

    async def run(self, backwards: bool = False):
        await super().run(backwards=backwards)
        if not backwards:
            # Every read is "this conversation's entries after id N, in order".
            from piccolo_conf import DB

            await DB.run_ddl("CREATE INDEX IF NOT EXISTS transcript_entries_conversation_id_idx "
                             "ON transcript_entries (conversation, id)")


async def forwards():
    manager = _Manager(migration_id=ID, app_name="pal", description=DESCRIPTION)
    manager.add_table(class_name="TranscriptEntry", tablename="transcript_entries", schema=None, columns=None)
    columns = (
        ("conversation", ForeignKey, _params(references=Conversation, on_delete=OnDelete.cascade,
                                             on_update=OnUpdate.cascade, target_column=None)),
        ("kind", Varchar, _params(length=8, default="")),
        ("speaker", Varchar, _params(length=200, default="")),
        ("text", Text, _params(default="")),
        ("is_self", Boolean, _params(default=False)),
        ("at", Timestamptz, _params(default=None)),
        ("created_at", Timestamptz, _params(default=None)),
    )
    for name, column_class, params in columns:
        manager.add_column(
            table_class_name="TranscriptEntry",
            tablename="transcript_entries",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )

    return manager

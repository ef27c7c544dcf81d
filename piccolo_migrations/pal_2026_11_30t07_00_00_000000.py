"""calendar_events.unplanned: the occurrences a PAL will not join, and why.

Caps on joins per series per day and per PAL, and one bot per PAL per time slot,
leave some occurrences without a join; the reason is kept on the event so the
meeting view can say so instead of dropping them silently.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import JSONB
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-30T07:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "calendar_events: unplanned occurrences with reasons"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="pal", description=DESCRIPTION)
    manager.add_column(
        table_class_name="CalendarEvent",
        tablename="calendar_events",
        column_name="unplanned",
        db_column_name="unplanned",
        column_class_name="JSONB",
        column_class=JSONB,
        params={
            "default": "[]",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )
    return manager

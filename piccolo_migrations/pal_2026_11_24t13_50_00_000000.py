"""Indexes for the reconcile tick (measured in bench/planning_bench.py).

The due-joins query and the one-bot-per-meeting check only care about live
joins, while finished joins pile up as history; partial indexes keep both
queries independent of that history.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-24T13:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "joins: partial indexes for due joins and live joins per PAL"

LIVE = "('scheduled', 'dispatching', 'joining', 'waiting_room', 'in_call')"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="pal", description=DESCRIPTION)

    async def add_indexes() -> None:
        from piccolo_conf import DB

        await DB.run_ddl(
            "CREATE INDEX IF NOT EXISTS joins_due_idx ON joins (join_at) WHERE status = 'scheduled'"
        )
        await DB.run_ddl(
            f"CREATE INDEX IF NOT EXISTS joins_live_per_pal_idx ON joins (pal, meeting_url) WHERE status IN {LIVE}"
        )
        await DB.run_ddl("CREATE INDEX IF NOT EXISTS joins_pal_join_at_idx ON joins (pal, join_at)")

    manager.add_raw(add_indexes)
    return manager

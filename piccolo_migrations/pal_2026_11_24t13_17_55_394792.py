from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-24T13:17:55:394792"
VERSION = "1.38.0"
DESCRIPTION = "joins: one scheduled join per occurrence (partial unique index)"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="pal", description=DESCRIPTION
    )

    manager.drop_constraint(
        table_class_name="Join",
        tablename="joins",
        constraint_name="unique_occurrence",
        schema=None,
    )

    async def partial_unique() -> None:
        # Piccolo cannot declare a partial index; one scheduled join per occurrence
        # lets a finished or stopping join stay beside its replacement.
        from piccolo_conf import DB

        await DB.run_ddl(
            "CREATE UNIQUE INDEX IF NOT EXISTS joins_one_scheduled_per_occurrence "
            "ON joins (calendar_event, recurrence_id) "
            "WHERE status = 'scheduled' AND calendar_event IS NOT NULL"
        )
        await DB.run_ddl("CREATE INDEX IF NOT EXISTS joins_calendar_event_idx ON joins (calendar_event)")
        await DB.run_ddl("CREATE INDEX IF NOT EXISTS calendar_events_planned_idx ON calendar_events (planned_until)")

    manager.add_raw(partial_unique)
    return manager

"""outbound_emails is gone: its rows are email deliveries now (previous migration)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-30T11:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "drop outbound_emails (replaced by deliveries of kind email)"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="pal", description=DESCRIPTION)
    manager.drop_table(class_name="OutboundEmail", tablename="outbound_emails", schema=None)
    return manager

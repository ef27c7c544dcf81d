"""webhook_endpoints and deliveries: signed webhooks through one durable outbox.

`deliveries` is the one outbox (app/services/deliveries.py): iMIP replies become rows of kind
`email` (copied here from outbound_emails, which the next migration drops) and webhook calls
rows of kind `webhook`. Partial indexes keep the claim query on pending rows only.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import (
    JSONB, Boolean, Bytea, ForeignKey, Integer, Serial, Text, Timestamptz, Varchar,
)
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table

ID = "2026-11-30T11:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook_endpoints and deliveries (the outbox shared by replies and webhooks)"


def _pk() -> Serial:
    return Serial(null=False, primary_key=True, unique=False, index=False, index_method=IndexMethod.btree,
                  choices=None, db_column_name="id", secret=False)


class Account(Table, tablename="accounts", schema=None):
    id = _pk()


class Pal(Table, tablename="pals", schema=None):
    id = _pk()


class WebhookEndpoint(Table, tablename="webhook_endpoints", schema=None):
    id = _pk()


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


def _null(**extra) -> dict:
    return _params(null=True, default=None, **extra)


ENDPOINT_COLUMNS = (
    ("webhook_id", Varchar, _params(length=32, default="", unique=True, index=True)),
    ("account", ForeignKey, _params(references=Account, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade,
                                    target_column=None, index=True)),
    ("url", Text, _params(default="")),
    ("event_types", JSONB, _params(default="[]")),
    ("enabled", Boolean, _params(default=True)),
    ("secret", Varchar, _params(length=100, default="")),
    ("previous_secret", Varchar, _null(length=100)),
    ("previous_until", Timestamptz, _null()),
    ("failing", Boolean, _params(default=False)),
    ("failing_since", Timestamptz, _null()),
    ("created_at", Timestamptz, _params(default=None)),
    ("updated_at", Timestamptz, _params(default=None)),
)

DELIVERY_COLUMNS = (
    ("delivery_id", Varchar, _params(length=32, default="", unique=True)),
    ("kind", Varchar, _params(length=10, default="")),
    ("pal", ForeignKey, _null(references=Pal, on_delete=OnDelete.set_null, on_update=OnUpdate.cascade,
                              target_column=None)),
    ("endpoint", ForeignKey, _null(references=WebhookEndpoint, on_delete=OnDelete.cascade,
                                   on_update=OnUpdate.cascade, target_column=None)),
    ("dedupe_key", Varchar, _null(length=500, unique=True)),
    ("order_key", Varchar, _null(length=100)),
    ("event_type", Varchar, _null(length=40)),
    ("body", Bytea, _params(default=b"")),
    ("meta", JSONB, _params(default="{}")),
    ("status", Varchar, _params(length=10, default="pending")),
    ("attempts", Integer, _params(default=0)),
    ("next_attempt_at", Timestamptz, _params(default=None)),
    ("lease_until", Timestamptz, _null()),
    ("lease_token", Varchar, _null(length=32)),
    ("give_up_at", Timestamptz, _null()),
    ("last_error", Text, _null()),
    ("last_status", Integer, _null()),
    ("created_at", Timestamptz, _params(default=None)),
    ("sent_at", Timestamptz, _null()),
)


class _Manager(MigrationManager):
    """Piccolo runs `add_raw` callbacks before it creates tables: indexes and the copy come after."""

    async def run(self, backwards: bool = False):
        await super().run(backwards=backwards)
        if backwards:
            return
        from piccolo_conf import DB

        # The claim: due pending rows, oldest first; the head of each order_key; a webhook's list.
        await DB.run_ddl("CREATE INDEX IF NOT EXISTS deliveries_due_idx ON deliveries (next_attempt_at) "
                         "WHERE status = 'pending'")
        await DB.run_ddl("CREATE INDEX IF NOT EXISTS deliveries_order_idx ON deliveries (order_key, id) "
                         "WHERE status = 'pending'")
        await DB.run_ddl("CREATE INDEX IF NOT EXISTS deliveries_endpoint_idx ON deliveries (endpoint, id)")
        # The iMIP replies already queued become email deliveries, keys and state unchanged.
        await DB.run_ddl(
            "INSERT INTO deliveries (delivery_id, kind, pal, dedupe_key, body, meta, status, attempts, "
            "next_attempt_at, last_error, created_at, sent_at) "
            "SELECT 'msg_mail' || id::text, 'email', pal, dedupe_key, message, "
            "jsonb_build_object('mail_from', mail_from, 'rcpt_to', rcpt_to), status, attempts, "
            "next_attempt_at, last_error, created_at, sent_at FROM outbound_emails ORDER BY id")


async def forwards():
    manager = _Manager(migration_id=ID, app_name="pal", description=DESCRIPTION)
    for class_name, tablename, columns in (("WebhookEndpoint", "webhook_endpoints", ENDPOINT_COLUMNS),
                                           ("Delivery", "deliveries", DELIVERY_COLUMNS)):
        manager.add_table(class_name=class_name, tablename=tablename, schema=None, columns=None)
        for name, column_class, params in columns:
            manager.add_column(
                table_class_name=class_name,
                tablename=tablename,
                column_name=name,
                db_column_name=name,
                column_class_name=column_class.__name__,
                column_class=column_class,
                params=params,
                schema=None,
            )
    return manager

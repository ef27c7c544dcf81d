"""Piccolo configuration: one PostgreSQL engine from DATABASE_URL."""

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine

from app.config import get_settings

DB = PostgresEngine(config={"dsn": get_settings().database_url}, log_queries=False)

APP_REGISTRY = AppRegistry(apps=["app.piccolo_app"])

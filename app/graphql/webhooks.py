"""GraphQL types and resolvers for webhooks; thin calls into app.services.webhooks."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.clock import utcnow
from app.graphql.context import Info
from app.services import webhooks as webhook_service


@strawberry.type
class WebhookDelivery:
    delivery_id: str
    webhook_id: str
    event_type: str | None
    status: str = strawberry.field(description="pending, sent or failed")
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: str
    next_attempt_at: str | None
    sent_at: str | None
    body: JSON = strawberry.field(description="What was sent: {type, timestamp, data}")

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "WebhookDelivery":
        return cls(**view)


@strawberry.type
class WebhookDeliveryPage:
    items: list[WebhookDelivery]
    has_more: bool


@strawberry.type
class Webhook:
    webhook_id: str
    url: str
    event_types: list[str] = strawberry.field(description="Empty: every type but conversation.transcript")
    enabled: bool
    failing: bool = strawberry.field(description="A delivery failed for 3 days; cleared by the next success")
    failing_since: str | None
    created_at: str
    updated_at: str
    secret: str | None = strawberry.field(default=None, description="whsec_…: only when created or rotated")
    account_id: strawberry.Private[int]

    @classmethod
    def from_view(cls, view: dict[str, Any], account_id: int) -> "Webhook":
        return cls(account_id=account_id, **view)

    @strawberry.field(description="Deliveries, newest first: older than `before`, at most `first` (1-100).")
    async def deliveries(self, status: str | None = None, before: str | None = None,
                         first: int = 50) -> WebhookDeliveryPage:
        items, more = await webhook_service.list_deliveries(self.account_id, self.webhook_id, status=status,
                                                            before=before, limit=first, limit_field="first")
        return WebhookDeliveryPage(items=[WebhookDelivery.from_view(v) for v in items], has_more=more)


@strawberry.input
class CreateWebhookInput:
    url: str
    event_types: list[str] | None = None
    enabled: bool = True


@strawberry.input
class UpdateWebhookInput:
    url: str | None = strawberry.UNSET
    event_types: list[str] | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET


def _document(input: Any) -> dict[str, Any]:
    """The REST body the input stands for: fields left out are not changed."""
    return {name: value for name, value in vars(input).items() if value is not strawberry.UNSET}


async def webhooks(info: Info) -> list[Webhook]:
    account = await info.context.account()
    return [Webhook.from_view(v, account.id) for v in await webhook_service.list_webhooks(account.id)]


async def webhook(info: Info, webhook_id: str) -> Webhook:
    account = await info.context.account()
    return Webhook.from_view(await webhook_service.get_webhook(account.id, webhook_id), account.id)


async def create_webhook(info: Info, input: CreateWebhookInput) -> Webhook:
    account = await info.context.account()
    view = await webhook_service.create_webhook(account.id, _document(input), utcnow())
    return Webhook.from_view(view, account.id)


async def update_webhook(info: Info, webhook_id: str, input: UpdateWebhookInput) -> Webhook:
    account = await info.context.account()
    view = await webhook_service.update_webhook(account.id, webhook_id, _document(input), utcnow())
    return Webhook.from_view(view, account.id)


async def delete_webhook(info: Info, webhook_id: str) -> bool:
    account = await info.context.account()
    await webhook_service.delete_webhook(account.id, webhook_id)
    return True


async def rotate_webhook_secret(info: Info, webhook_id: str) -> Webhook:
    account = await info.context.account()
    return Webhook.from_view(await webhook_service.rotate_secret(account.id, webhook_id, utcnow()), account.id)


async def replay_webhook_delivery(info: Info, webhook_id: str, delivery_id: str) -> WebhookDelivery:
    account = await info.context.account()
    view = await webhook_service.replay_delivery(account.id, webhook_id, delivery_id, utcnow())
    return WebhookDelivery.from_view(view)

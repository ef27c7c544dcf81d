"""GraphQL types and resolvers for webhooks; thin calls into app.services.webhooks."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.clock import utcnow
from app.graphql.context import Info
from app.graphql.enums import graphql_enum
from app.graphql.paging import Connection, PageInfo
from app.graphql.scalars import DateTime
from app.services import webhooks as webhook_service

DeliveryStatus = graphql_enum("DeliveryStatus", webhook_service.DELIVERY_STATUSES,
                              "Where a webhook delivery is: pending (to be sent or retried), sent or failed.")


@strawberry.type
class WebhookDelivery:
    delivery_id: strawberry.ID
    webhook_id: strawberry.ID
    event_type: str | None = strawberry.field(description="invite.received, join.in_call, … (docs/webhooks.md)")
    status: DeliveryStatus
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: DateTime
    next_attempt_at: DateTime | None
    sent_at: DateTime | None
    body: JSON = strawberry.field(description="What was sent: {type, timestamp, data}")

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "WebhookDelivery":
        return cls(**view)


@strawberry.type
class Webhook:
    webhook_id: strawberry.ID
    url: str
    event_types: list[str] = strawberry.field(description="Empty: every type but conversation.transcript")
    enabled: bool
    failing: bool = strawberry.field(description="A delivery failed for 3 days; cleared by the next success")
    failing_since: DateTime | None
    created_at: DateTime
    updated_at: DateTime
    secret: str | None = strawberry.field(default=None, description="whsec_…: only when created or rotated")
    account_id: strawberry.Private[int]

    @classmethod
    def from_view(cls, view: dict[str, Any], account_id: int) -> "Webhook":
        return cls(account_id=account_id, **view)

    @strawberry.field(description="Deliveries, newest first; `first` 1-100 (default 50), `after` an endCursor.")
    async def deliveries(self, status: DeliveryStatus | None = None, first: int = 50,
                         after: str | None = None) -> Connection[WebhookDelivery]:
        page = await webhook_service.list_deliveries(
            self.account_id, self.webhook_id, status=str(status.value) if status is not None else None,
            before=after, limit=first, limit_field="first")
        return Connection(nodes=[WebhookDelivery.from_view(v) for v in page.items],
                          page_info=PageInfo(end_cursor=page.end_cursor or after, has_next_page=page.has_next_page))


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


async def webhook(info: Info, webhook_id: strawberry.ID) -> Webhook:
    account = await info.context.account()
    return Webhook.from_view(await webhook_service.get_webhook(account.id, webhook_id), account.id)


async def create_webhook(info: Info, input: CreateWebhookInput) -> Webhook:
    account = await info.context.account()
    view = await webhook_service.create_webhook(account.id, _document(input), utcnow())
    return Webhook.from_view(view, account.id)


async def update_webhook(info: Info, webhook_id: strawberry.ID, input: UpdateWebhookInput) -> Webhook:
    account = await info.context.account()
    view = await webhook_service.update_webhook(account.id, webhook_id, _document(input), utcnow())
    return Webhook.from_view(view, account.id)


async def delete_webhook(info: Info, webhook_id: strawberry.ID) -> bool:
    account = await info.context.account()
    await webhook_service.delete_webhook(account.id, webhook_id)
    return True


async def rotate_webhook_secret(info: Info, webhook_id: strawberry.ID) -> Webhook:
    account = await info.context.account()
    return Webhook.from_view(await webhook_service.rotate_secret(account.id, webhook_id, utcnow()), account.id)


async def replay_webhook_delivery(info: Info, webhook_id: strawberry.ID, delivery_id: strawberry.ID) -> WebhookDelivery:
    account = await info.context.account()
    view = await webhook_service.replay_delivery(account.id, webhook_id, delivery_id, utcnow())
    return WebhookDelivery.from_view(view)

"""REST /v2/webhooks: an account's webhook endpoints, their deliveries and replays."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, delete, get, patch, post
from litestar import get as get_route  # `get` is also a handler of the controller below
from litestar.di import Provide
from litestar.params import Body, Parameter

from app.clock import utcnow
from app.rest.common import current_account
from app.rest.openapi import (
    SECURITY, WEBHOOK_CREATE_SCHEMA, WEBHOOK_PATCH_SCHEMA, DeliveryList, DeliveryView, WebhookList, WebhookView,
    error_responses,
)
from app.services import webhooks as webhook_service
from app.services.accounts import AccountRef

WebhookCreate = Annotated[Any, Body(description="{url, event_types?, enabled?}", schema_extra=WEBHOOK_CREATE_SCHEMA)]
WebhookPatch = Annotated[Any, Body(description="Any of url, event_types, enabled", schema_extra=WEBHOOK_PATCH_SCHEMA)]


class WebhookController(Controller):
    path = "/v2/webhooks"
    tags = ["Webhooks"]
    dependencies = {"account": Provide(current_account)}
    security = SECURITY

    @post("/", status_code=201, summary="Add a webhook endpoint",
          description="The answer carries the signing secret (whsec_…); it is never shown again.",
          responses=error_responses(400, 401, 403, 408, 413))
    async def create(self, account: AccountRef, data: WebhookCreate) -> WebhookView:
        return await webhook_service.create_webhook(account.id, data, utcnow())  # type: ignore[return-value]

    @get("/", summary="List the account's webhook endpoints", responses=error_responses(401))
    async def list(self, account: AccountRef) -> WebhookList:
        items = await webhook_service.list_webhooks(account.id)
        return {"data": items, "total_count": len(items)}  # type: ignore[typeddict-item]

    @get("/{webhook_id:str}", summary="Get a webhook endpoint", responses=error_responses(401, 404))
    async def get(self, account: AccountRef, webhook_id: str) -> WebhookView:
        return await webhook_service.get_webhook(account.id, webhook_id)  # type: ignore[return-value]

    @patch("/{webhook_id:str}", summary="Change a webhook's url, event_types or enabled",
           responses=error_responses(400, 401, 404, 408, 413))
    async def patch(self, account: AccountRef, webhook_id: str, data: WebhookPatch) -> WebhookView:
        return await webhook_service.update_webhook(  # type: ignore[return-value]
            account.id, webhook_id, data, utcnow())

    @delete("/{webhook_id:str}", status_code=204, summary="Delete a webhook and its deliveries",
            responses=error_responses(401, 404))
    async def delete(self, account: AccountRef, webhook_id: str) -> None:
        await webhook_service.delete_webhook(account.id, webhook_id)

    @post("/{webhook_id:str}/rotate-secret", status_code=200, summary="Rotate the signing secret",
          description="The answer carries the new secret; the old one also signs for 24 h.",
          responses=error_responses(401, 404))
    async def rotate_secret(self, account: AccountRef, webhook_id: str) -> WebhookView:
        return await webhook_service.rotate_secret(account.id, webhook_id, utcnow())  # type: ignore[return-value]

    @get_route("/{webhook_id:str}/deliveries", summary="The webhook's deliveries, newest first",
         description="Page with `cursor` (the previous page's `next_cursor`; `before`, the last "
                     "`delivery_id` seen, is the same).", responses=error_responses(400, 401, 404))
    async def deliveries(
        self, account: AccountRef, webhook_id: str,
        status: Annotated[Literal["pending", "sent", "failed"] | None, Parameter(description="Only these.")] = None,
        cursor: Annotated[str | None, Parameter(max_length=32, description="next_cursor of the previous page.")] = None,
        before: Annotated[str | None, Parameter(max_length=32, description="A delivery id: older ones.")] = None,
        limit: Annotated[int | None, Parameter(ge=1, le=100, description="At most this many (50).")] = None,
    ) -> DeliveryList:
        page = await webhook_service.list_deliveries(account.id, webhook_id, status=status,
                                                     before=cursor or before, limit=limit)
        next_cursor = page.end_cursor if page.has_next_page else None
        return {"data": page.items, "has_more": page.has_next_page,  # type: ignore[typeddict-item]
                "next_cursor": next_cursor}

    @post("/{webhook_id:str}/deliveries/{delivery_id:str}/replay", status_code=202,
          summary="Send a delivery again (same webhook-id and body)",
          description="409 while the delivery is still pending.", responses=error_responses(401, 404, 409))
    async def replay(self, account: AccountRef, webhook_id: str, delivery_id: str) -> DeliveryView:
        return await webhook_service.replay_delivery(  # type: ignore[return-value]
            account.id, webhook_id, delivery_id, utcnow())

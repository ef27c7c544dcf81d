"""The GraphQL schema: queries, mutations and subscriptions over the shared services."""

from __future__ import annotations

import time
from collections.abc import Iterator

import strawberry

from app.graphql import activity
from app.graphql import pals as pal_api
from app.graphql import webhooks as webhook_api
from app.graphql.errors import AppSchema, DomainErrors
from app.graphql.limits import limit_extensions
from app.graphql.paging import Connection
from app.graphql.metrics import observe_operation
from app.graphql.subscriptions import Subscription


@strawberry.type
class Query:
    pal: pal_api.Pal = strawberry.field(resolver=pal_api.pal)
    pals: Connection[pal_api.Pal] = strawberry.field(resolver=pal_api.pals)
    faces: list[pal_api.Face] = strawberry.field(resolver=pal_api.faces)
    check_username: pal_api.UsernameAvailability = strawberry.field(resolver=pal_api.check_username)
    join: activity.Join = strawberry.field(resolver=activity.join)
    conversation: activity.Conversation = strawberry.field(resolver=activity.conversation)
    transcript: Connection[activity.TranscriptEntry] = strawberry.field(resolver=activity.transcript)
    webhooks: list[webhook_api.Webhook] = strawberry.field(resolver=webhook_api.webhooks)
    webhook: webhook_api.Webhook = strawberry.field(resolver=webhook_api.webhook)


@strawberry.type
class Mutation:
    create_pal: pal_api.Pal = strawberry.mutation(resolver=pal_api.create_pal)
    patch_pal: pal_api.Pal = strawberry.mutation(resolver=pal_api.patch_pal)
    update_pal: pal_api.Pal = strawberry.mutation(resolver=pal_api.update_pal)
    delete_pal: bool = strawberry.mutation(resolver=pal_api.delete_pal)
    create_face: pal_api.Face = strawberry.mutation(resolver=pal_api.create_face)
    delete_face: bool = strawberry.mutation(resolver=pal_api.delete_face)
    create_conversation: activity.Conversation = strawberry.mutation(resolver=activity.create_conversation)
    end_conversation: activity.Conversation = strawberry.mutation(resolver=activity.end_conversation)
    say: activity.CommandAccepted = strawberry.mutation(resolver=activity.say)
    send_chat: activity.CommandAccepted = strawberry.mutation(resolver=activity.send_chat)
    create_webhook: webhook_api.Webhook = strawberry.mutation(resolver=webhook_api.create_webhook)
    update_webhook: webhook_api.Webhook = strawberry.mutation(resolver=webhook_api.update_webhook)
    delete_webhook: bool = strawberry.mutation(resolver=webhook_api.delete_webhook)
    rotate_webhook_secret: webhook_api.Webhook = strawberry.mutation(resolver=webhook_api.rotate_webhook_secret)
    replay_webhook_delivery: webhook_api.WebhookDelivery = strawberry.mutation(
        resolver=webhook_api.replay_webhook_delivery)


class MeteredDomainErrors(DomainErrors):
    """DomainErrors with the operation timer (app/graphql/metrics.py) in the same on_operation hook.

    Strawberry wraps every extension's hook in a generator per operation; two extensions
    with one hook each cost ~14 µs more per request than one (bench/api_bench.py). The timer
    still spans the whole operation, limits and error masking included.
    """

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield from super().on_operation()
        observe_operation(self.execution_context, started)


schema = AppSchema(query=Query, mutation=Mutation, subscription=Subscription, extensions=[
        MeteredDomainErrors,  # first: times the whole operation, limits included (app/graphql/metrics.py)
        # Bounded parsing, then aliases/depth/cost before validation (app/graphql/limits.py).
        # Both keep Strawberry's parser and validation caches: graphql-core's validation was
        # 55% of a pal(palId) request's CPU (bench/api_bench.py); the caches are module-level
        # LRUs shared by the per-request extension instances.
        *limit_extensions(),
    ])

"""What one GraphQL document may cost, checked before graphql-core validates or runs it.

An anonymous request never gets here (the key is checked first, app/graphql/transport.py);
these limits bound what a tenant with a valid key can make one API process do. Each limit
is a setting (app/config.py) and a document over one gets `extensions.code`
QUERY_TOO_COMPLEX, on HTTP and over the websocket alike:

* parsing: GRAPHQL_MAX_QUERY_LENGTH characters (checked before lexing: whitespace, comments
  and long strings are read one character at a time) and GRAPHQL_MAX_TOKENS tokens and
  comments, given to graphql-core's parser, which also stops at 200 levels of nesting;
* after parsing, before validation (both linear, fragments counted where they are spread
  but each computed once, so `...F ...F` chains cannot make the count itself exponential):
  GRAPHQL_MAX_ALIASES aliased fields, GRAPHQL_MAX_DEPTH levels of fields, and
  GRAPHQL_MAX_COST, an estimate of the fields the response will hold: 1 per field, times
  the size of every list above it (the page size `first` for a connection's `nodes`,
  the account's face quota for `faces`, LIST_SIZE for the others). A whole `__schema` costs half the limit:
  it is ~20 ms of CPU that runs in one go (introspection never waits for I/O);
* validation: graphql-core compares same-name fields pairwise; its budget for that is
  lowered from 500,000 to VALIDATION_BUDGET (a 5,000-token document could take 1.2 s), and
  introspection may nest its lists at most 3 deep (graphql-core's MaxIntrospectionDepthRule,
  one of its specified rules since 3.3).

Measured on the 2-core development VM: a refusal takes 1-15 ms (the slowest: a source near
MAX_BODY_BYTES, whose error position is looked up); the slowest document within the limits
to validate, ~15 ms. The most expensive query allowed by default (100 PALs, 200 events
each) runs ~1 s of CPU in slices under ~80 ms (garbage collection aside).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)
from graphql.validation.validate import ValidationAbortedError
from graphql.validation.rules import overlapping_fields_can_be_merged
from strawberry.extensions import ParserCache, SchemaExtension, ValidationCache
from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.extensions.validation_cache import _get_validate_cache

from app.config import Settings, get_settings
from app.domain.paging import DEFAULT_PAGE, MAX_PAGE

QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
# What the cost estimate assumes a list holds, unless LIST_SIZES knows better.
LIST_SIZE = 10
# Lists whose size is known: a number, an account quota (setting, and its default), or
# PAGE: the `first` argument of the field above (literal; a variable counts as the largest page).
PAGE = "first"
# Every connection's `nodes` holds at most `first` of the field above (app/graphql/paging.py).
LIST_SIZES: dict[tuple[str, str], int | str | tuple[str, int]] = {
    **{(f"{item}Connection", "nodes"): PAGE for item in ("Pal", "Meeting", "Join", "PalEvent", "TranscriptEntry")},
    ("Query", "faces"): ("max_faces_per_account", 20),
    ("PalSnapshot", "upcoming"): 50,
    ("PalSnapshot", "live"): 50,
}
PAGE_DEFAULT, PAGE_MAX = DEFAULT_PAGE, MAX_PAGE  # every connection: first 50 by default, at most 200
# Introspection is priced as a whole, relative to GRAPHQL_MAX_COST: a whole `__schema` is
# ~20 ms of CPU that runs in one go (its resolvers never wait), so at most 2 fit in one document.
INTROSPECTION_SHARE = {"__schema": 0.5, "__type": 0.02}
# graphql-core's OverlappingFieldsCanBeMerged work budget; real queries need a few units.
VALIDATION_BUDGET = 5_000
_CAP = 10**12  # counts saturate here: `...F ...F` forty deep is 2**40, not a huge integer

overlapping_fields_can_be_merged.MAX_COMPLEXITY_BUDGET = VALIDATION_BUDGET


@dataclass(frozen=True)
class QueryLimits:
    max_length: int
    max_tokens: int
    max_aliases: int
    max_depth: int
    max_cost: int
    # (type, field) -> items the cost estimate assumes; PAGE for the `first` argument above
    list_sizes: dict[tuple[str, str], int | str] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "QueryLimits":
        global _LAST
        s = settings or get_settings()
        if _LAST is not None and _LAST[0] is s:  # Settings is frozen: one QueryLimits per instance
            return _LAST[1]
        limits = cls._build(s)
        _LAST = (s, limits)  # settings change only in tests; keep the last
        return limits

    @classmethod
    def _build(cls, s: Settings) -> "QueryLimits":
        sizes = {key: getattr(s, size[0], size[1]) if isinstance(size, tuple) else size
                 for key, size in LIST_SIZES.items()}
        return cls(s.graphql_max_query_length, s.graphql_max_tokens, s.graphql_max_aliases,
                   s.graphql_max_depth, s.graphql_max_cost, sizes)

    def introspection_cost(self, name: str) -> int:
        return max(1, int(self.max_cost * INTROSPECTION_SHARE[name]))

    def parse_options(self) -> dict[str, int]:
        return {"max_source_length": self.max_length, "max_lexical_tokens": self.max_tokens,
                "max_comments": self.max_tokens}


# The settings last asked about and their limits: read per operation, built once.
_LAST: tuple[Settings, QueryLimits] | None = None


@dataclass
class DocumentCost:
    aliases: int = 0
    depth: int = 0
    cost: int = 0


@dataclass
class _Definition:
    """One operation or fragment on its own; its spreads are added in later."""

    cost: int = 0
    aliases: int = 0
    depth: int = 0
    # (fragment, list multiplier at the spread, depth at the spread, inside introspection)
    spreads: list[tuple[str, int, int, bool]] = field(default_factory=list)


def _unwrap(schema_type: Any) -> tuple[Any, bool]:
    """The named type under NonNull/List wrappers, and whether there was a list."""
    is_list = False
    while isinstance(schema_type, (GraphQLNonNull, GraphQLList)):
        is_list = is_list or isinstance(schema_type, GraphQLList)
        schema_type = schema_type.of_type
    return schema_type, is_list


def _page_size(node: FieldNode) -> int | None:
    """The `first` argument of a field: its literal value, or PAGE_MAX for a variable."""
    for argument in node.arguments or ():
        if argument.name.value == PAGE:
            value = argument.value
            if isinstance(value, IntValueNode) and len(value.value) <= 6:
                return max(1, min(int(value.value), PAGE_MAX))
            return PAGE_MAX
    return None


def _child(parent: Any, node: FieldNode, page: int | None, limits: QueryLimits) -> tuple[Any, int]:
    """The type a field's selection applies to, and how many times it is estimated to run."""
    if not isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
        return None, 1  # a union has only __typename; unknown types are validation's business
    definition = parent.fields.get(node.name.value)
    if definition is None:
        return None, 1
    named, is_list = _unwrap(definition.type)
    if not is_list:
        return named, 1
    size = limits.list_sizes.get((parent.name, node.name.value), LIST_SIZE)
    if size == PAGE:
        size = page if page is not None else PAGE_DEFAULT
    return named, int(size)


def _measure_definition(schema: GraphQLSchema, selection_set: SelectionSetNode, root: Any,
                        limits: QueryLimits) -> _Definition:
    out = _Definition()
    # (selections, parent type, multiplier, depth, inside introspection, `first` of the field above)
    stack: list[tuple[SelectionSetNode, Any, int, int, bool, int | None]] = [
        (selection_set, root, 1, 0, False, None)]
    while stack:  # no recursion: the parser allows 200 levels
        selections, parent, multiplier, depth, introspection, page = stack.pop()
        for node in selections.selections:
            if isinstance(node, FieldNode):
                if node.alias:
                    out.aliases += 1
                name = node.name.value
                if introspection or name in INTROSPECTION_SHARE:
                    # Priced as a whole (and bounded by MaxIntrospectionDepthRule); walked for aliases only.
                    if not introspection:
                        out.cost = min(out.cost + multiplier * limits.introspection_cost(name), _CAP)
                    if node.selection_set:
                        stack.append((node.selection_set, None, 0, depth, True, None))
                    continue
                out.cost = min(out.cost + multiplier, _CAP)
                out.depth = max(out.depth, depth + 1)
                if node.selection_set:
                    child, factor = _child(parent, node, page, limits)
                    stack.append((node.selection_set, child, min(multiplier * factor, _CAP), depth + 1, False,
                                  _page_size(node)))
            elif isinstance(node, InlineFragmentNode):
                condition = schema.get_type(node.type_condition.name.value) if node.type_condition else parent
                stack.append((node.selection_set, condition, multiplier, depth, introspection, page))
            elif isinstance(node, FragmentSpreadNode):
                out.spreads.append((node.name.value, multiplier, depth, introspection))
    return out


def _with_spreads(definition: _Definition, fragments: dict[str, DocumentCost]) -> DocumentCost:
    total = DocumentCost(definition.aliases, definition.depth, definition.cost)
    for name, multiplier, depth, introspection in definition.spreads:
        fragment = fragments.get(name)
        if fragment is None:  # unknown, or a cycle: validation reports both
            continue
        total.aliases = min(total.aliases + fragment.aliases, _CAP)
        if not introspection:
            total.cost = min(total.cost + multiplier * fragment.cost, _CAP)
            total.depth = max(total.depth, depth + fragment.depth)
    return total


def _fragment_costs(definitions: dict[str, _Definition]) -> dict[str, DocumentCost]:
    """Each fragment's cost with its spreads expanded, computed once, without recursion."""
    done: dict[str, DocumentCost] = {}
    for root in definitions:
        if root in done:
            continue
        path: list[tuple[str, Iterator[tuple[str, int, int, bool]]]] = [(root, iter(definitions[root].spreads))]
        on_path = {root}
        while path:
            name, spreads = path[-1]
            for spread in spreads:
                target = spread[0]
                if target in definitions and target not in done and target not in on_path:
                    path.append((target, iter(definitions[target].spreads)))
                    on_path.add(target)
                    break
            else:
                path.pop()
                on_path.discard(name)
                done[name] = _with_spreads(definitions[name], done)
    return done


def measure(schema: GraphQLSchema, document: DocumentNode, limits: QueryLimits) -> DocumentCost:
    """Aliases, depth and estimated cost of every operation in the document, added up."""
    fragments = {
        node.name.value: _measure_definition(schema, node.selection_set,
                                             schema.get_type(node.type_condition.name.value), limits)
        for node in document.definitions if isinstance(node, FragmentDefinitionNode)
    }
    fragment_costs = _fragment_costs(fragments)
    roots = {OperationType.QUERY: schema.query_type, OperationType.MUTATION: schema.mutation_type,
             OperationType.SUBSCRIPTION: schema.subscription_type}
    total = DocumentCost()
    for node in document.definitions:
        if isinstance(node, OperationDefinitionNode):
            cost = _with_spreads(_measure_definition(schema, node.selection_set, roots.get(node.operation), limits),
                                 fragment_costs)
            total.aliases = min(total.aliases + cost.aliases, _CAP)
            total.cost = min(total.cost + cost.cost, _CAP)
            total.depth = max(total.depth, cost.depth)
    return total


def too_complex(message: str, limit: str | None = None) -> GraphQLError:
    extensions: dict[str, Any] = {"code": QUERY_TOO_COMPLEX}
    if limit:
        extensions["limit"] = limit
    return GraphQLError(message, extensions=extensions)


def check(schema: GraphQLSchema, document: DocumentNode, limits: QueryLimits) -> GraphQLError | None:
    cost = measure(schema, document, limits)
    if cost.aliases > limits.max_aliases:
        return too_complex(f"Too many aliases: {cost.aliases} (at most {limits.max_aliases}).",
                           "GRAPHQL_MAX_ALIASES")
    if cost.depth > limits.max_depth:
        return too_complex(f"Query nested too deeply: {cost.depth} levels of fields (at most {limits.max_depth}).",
                           "GRAPHQL_MAX_DEPTH")
    if cost.cost > limits.max_cost:
        return too_complex(f"Query too expensive: estimated cost {cost.cost} (at most {limits.max_cost}); "
                           "ask for fewer fields, lists or aliases.", "GRAPHQL_MAX_COST")
    return None


def is_limit_error(error: GraphQLError) -> bool:
    """graphql-core's own limits: the parser's (size, tokens, nesting) and validation's."""
    if isinstance(error, GraphQLSyntaxError):
        return error.message.endswith("Parsing aborted.")
    return isinstance(error, ValidationAbortedError) or error.message == "Maximum introspection depth exceeded"


def limit_message(error: GraphQLError) -> str:
    """The client's message for one of graphql-core's limits (it is no syntax error)."""
    if error.message == "Validation aborted.":  # OverlappingFieldsCanBeMerged's budget, or nesting
        return "Validation aborted: the query repeats the same fields or fragments too often."
    return error.message.removeprefix("Syntax Error: ")


class BoundedParser(ParserCache):
    """ParserCache with the parser's limits; a document it refuses is left to Strawberry.

    Strawberry then parses it again, under the same limits, inside its own error handling,
    so the refusal becomes a GraphQL error (ParserCache raising from its hook escaped that
    handling over the websocket and ended the operation with a logged traceback).
    """

    def __init__(self, limits: QueryLimits, maxsize: int = 256) -> None:
        super().__init__(maxsize=maxsize)
        self.limits = limits

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options.update(self.limits.parse_options())  # type: ignore[typeddict-item]
        # A source over the length limit is left to Strawberry's parse at once: the refusal
        # costs a scan of the source (for the error's line), and one is enough.
        if context.query and context.graphql_document is None and len(context.query) <= self.limits.max_length:
            try:
                context.graphql_document = self.cached_parse_document(context.query, **context.parse_options)
            except GraphQLError:
                pass
        yield


class _Verdicts:
    """What the limits and validation said of a document, keyed by the document's identity.

    BoundedParser hands out the same DocumentNode for the same query text (a shared LRU), so
    a repeated query is recognised without hashing it: graphql-core's nodes hash their whole
    tree (ValidationCache's key), and the limits walk it; together ~15 % of a small query's
    CPU (bench/api_bench.py). The entry keeps its document alive, so an id is never reused
    while it is cached.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        # rules: Strawberry builds a new (equal) tuple of validation rules per operation.
        self._entries: OrderedDict[int, tuple[DocumentNode, QueryLimits, Any, list[GraphQLError]]] = OrderedDict()

    def get(self, document: DocumentNode, limits: QueryLimits, rules: Any) -> list[GraphQLError] | None:
        entry = self._entries.get(id(document))
        if entry is None or entry[0] is not document or entry[1] is not limits or entry[2] != rules:
            return None
        self._entries.move_to_end(id(document))
        return entry[3]

    def put(self, document: DocumentNode, limits: QueryLimits, rules: Any, errors: list[GraphQLError]) -> None:
        self._entries[id(document)] = (document, limits, rules, errors)
        self._entries.move_to_end(id(document))
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)


VERDICTS = _Verdicts(maxsize=256)


class BoundedValidation(ValidationCache):
    """Aliases, depth and cost first; only a document within them reaches graphql-core's rules."""

    def __init__(self, limits: QueryLimits, maxsize: int = 256) -> None:
        super().__init__(maxsize=maxsize)
        self.limits = limits

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        assert document is not None
        rules = context.validation_rules
        errors = VERDICTS.get(document, self.limits, rules)
        if errors is None:
            refusal = check(context.schema._schema, document, self.limits)
            if refusal is not None:
                errors = [refusal]  # Strawberry then skips validation
            else:
                # graphql-core 3.3's specified rules include MaxIntrospectionDepthRule.
                errors = self.cached_validate_document(context.schema._schema, document, rules)
            VERDICTS.put(document, self.limits, rules, errors)
        context.pre_execution_errors = errors
        yield


def limit_extensions() -> list[Any]:
    """The schema's extension factories; the limits are read from the settings per operation."""
    return [lambda: BoundedDocument(QueryLimits.from_settings())]


class BoundedDocument(BoundedParser, BoundedValidation):
    """Both steps in one extension: one object and one set of hooks per operation, not two."""

    def __init__(self, limits: QueryLimits, maxsize: int = 256) -> None:  # noqa: D107
        SchemaExtension.__init__(self)
        self.limits = limits
        self.cached_parse_document = _get_parse_cache(maxsize)
        self.cached_validate_document = _get_validate_cache(maxsize)

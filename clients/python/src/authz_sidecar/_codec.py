"""Requests and answers: building `authz.v1.Request`s and turning `authz.v1.Response`s into the
typed results. Shared by the sync and the async client; no I/O here."""

from __future__ import annotations

import struct
from typing import Callable, Optional, Sequence, Union

from ._proto import authz_pb2 as pb
from ._types import (
    Access,
    AccessItem,
    AuthzError,
    BatchResult,
    CanUseCheck,
    CanUseResult,
    CapabilitiesCheck,
    CapabilitiesResult,
    Capability,
    Level,
    LevelItem,
    Page,
    PermissionCheck,
    PermissionResult,
    Reason,
    Role,
    RoleSource,
    Seat,
    SeatResult,
    SeatTypeCheck,
    StatusCode,
    StatusResult,
    Step,
)

from ._types import _fast_constructor

_CanUseResult = _fast_constructor(CanUseResult)
_PermissionResult = _fast_constructor(PermissionResult)
_SeatResult = _fast_constructor(SeatResult)
_CapabilitiesResult = _fast_constructor(CapabilitiesResult)
_LevelItem = _fast_constructor(LevelItem)
_AccessItem = _fast_constructor(AccessItem)
_Step = _fast_constructor(Step)

#: The 5-byte frame header: flag 0 (uncompressed), payload length big-endian.
HEADER = struct.Struct(">BI")
HEADER_SIZE = 5
#: The server's default request limit (proto/README.md "Framing").
DEFAULT_MAX_REQUEST_SIZE = 65536
#: Responses may be larger than requests (a batch with explanations); accept generously.
DEFAULT_MAX_RESPONSE_SIZE = 64 << 20
#: The server waits at most 60 s whatever the deadline; deadline_ms is a uint32.
MAX_DEADLINE_MS = 60_000

Id = Union[str, bytes]

Response = pb.Response
Request = pb.Request


def deadline_ms(timeout: Optional[float]) -> int:
    """The `deadline_ms` to send for a client timeout.

    The clients send it only with `min_snapshot_version`, the one case where the server holds
    a request (and the requests behind it on the connection) waiting for a snapshot: the
    server then answers by the client's deadline instead of its default 1 s. For every other
    call the client's own timeout is the deadline, and the field stays 0: authzd's fast path
    for plain checks (Sources/AuthzWire/FastPath.swift) only takes requests without a
    deadline, and a deadline costs each check several microseconds.

    The server's budget is the client's less a margin (a tenth, at most 50 ms), so that when
    the snapshot does not come the server's own answer (FAILED_PRECONDITION, naming the
    version in service) arrives before the client gives up, rather than racing it."""
    if timeout is None:
        return 0
    budget = timeout - min(0.05, timeout / 10)
    return max(1, min(MAX_DEADLINE_MS, int(budget * 1000)))


def frame(payload: bytes, max_request_size: int) -> bytes:
    size = len(payload)
    if size > max_request_size:
        raise AuthzError(
            StatusCode.RESOURCE_EXHAUSTED,
            f"the request is {size} bytes, over the {max_request_size}-byte frame limit "
            "(split a large batch into several calls)",
        )
    return HEADER.pack(0, size) + payload


def as_bytes(value: Id, field: str) -> bytes:
    """A lookup id or page token: bytes as given, str encoded as UTF-8."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{field} must be str or bytes, not {type(value).__name__}")


def as_str(value: Id, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    raise TypeError(f"{field} must be str or bytes, not {type(value).__name__}")


# --- Enums from wire values ------------------------------------------------------------------

_LEVELS = tuple(Level)
_ACCESSES = tuple(Access)
_SEATS = tuple(Seat)
_ROLES = tuple(Role)
_ROLE_SOURCES = tuple(RoleSource)
_CAPABILITIES = tuple(Capability)
_REASONS = tuple(Reason)


def _unknown(enum_name: str, value: int) -> AuthzError:
    return AuthzError(
        StatusCode.INTERNAL,
        f"the server answered an unknown {enum_name} value {value} "
        "(is this client older than the server? update authz-sidecar)",
    )


def _level(v: int) -> Level:
    try:
        return _LEVELS[v]
    except IndexError:
        raise _unknown("Level", v) from None


def _access(v: int) -> Access:
    try:
        return _ACCESSES[v]
    except IndexError:
        raise _unknown("Access", v) from None


def _reason(v: int) -> Reason:
    try:
        return _REASONS[v]
    except IndexError:
        raise _unknown("Reason", v) from None


def _table(table, enum_name: str, v: int):
    try:
        return table[v]
    except IndexError:
        raise _unknown(enum_name, v) from None


# --- Requests ------------------------------------------------------------------------------


def _header(request: pb.Request, min_snapshot_version: int, explain: bool = False) -> pb.Request:
    if min_snapshot_version:
        request.min_snapshot_version = min_snapshot_version
    if explain:
        request.explain = True
    return request


def can_use_request(user: str, asset: str, project: str, required_access, min_snapshot_version: int) -> pb.Request:
    request = pb.Request()
    method = request.can_use
    method.user = user
    method.asset = asset
    if project:
        method.project = project
    if required_access:
        method.required_access = required_access
    return _header(request, min_snapshot_version)


def permission_request(user: str, project: str, required_level, explain: bool, min_snapshot_version: int) -> pb.Request:
    request = pb.Request()
    method = request.effective_permission
    method.user = user
    method.project = project
    if required_level:
        method.required_level = required_level
    return _header(request, min_snapshot_version, explain)


def seat_type_request(user: str, min_snapshot_version: int) -> pb.Request:
    request = pb.Request()
    request.seat_type.user = user
    return _header(request, min_snapshot_version)


def capabilities_request(user: str, min_snapshot_version: int) -> pb.Request:
    request = pb.Request()
    request.capabilities.user = user
    return _header(request, min_snapshot_version)


def batch_request(checks: Sequence, explain: bool, min_snapshot_version: int) -> pb.Request:
    request = pb.Request()
    batch = request.batch
    batch.SetInParent()  # an empty batch is still a Batch call
    for check in checks:
        entry = batch.checks.add()
        if isinstance(check, CanUseCheck):
            entry.can_use.user = check.user
            entry.can_use.asset = check.asset
            if check.project:
                entry.can_use.project = check.project
            if check.required_access:
                entry.can_use.required_access = check.required_access
        elif isinstance(check, PermissionCheck):
            entry.effective_permission.user = check.user
            entry.effective_permission.project = check.project
            if check.required_level:
                entry.effective_permission.required_level = check.required_level
        elif isinstance(check, SeatTypeCheck):
            entry.seat_type.user = check.user
        elif isinstance(check, CapabilitiesCheck):
            entry.capabilities.user = check.user
        else:
            raise TypeError(
                "a batch check is a CanUseCheck, PermissionCheck, SeatTypeCheck or CapabilitiesCheck, "
                f"not {type(check).__name__}"
            )
    return _header(request, min_snapshot_version, explain)


def status_request() -> pb.Request:
    request = pb.Request()
    request.status.SetInParent()
    return request


def reload_request() -> pb.Request:
    request = pb.Request()
    request.reload.SetInParent()
    return request


def list_projects_request(user: Id, min_level, page_size: int, page_token: Id, min_snapshot_version: int) -> pb.Request:
    request = pb.Request()
    method = request.list_projects
    method.SetInParent()
    method.user = as_bytes(user, "user")
    if min_level:
        method.min_level = min_level
    if page_size:
        method.page_size = page_size
    method.page_token = as_bytes(page_token, "page_token")
    return _header(request, min_snapshot_version)


def list_project_access_request(project: Id, min_level, page_size: int, page_token: Id, min_snapshot_version: int) -> pb.Request:
    request = pb.Request()
    method = request.list_project_access
    method.SetInParent()
    method.project = as_bytes(project, "project")
    if min_level:
        method.min_level = min_level
    if page_size:
        method.page_size = page_size
    method.page_token = as_bytes(page_token, "page_token")
    return _header(request, min_snapshot_version)


def list_assets_request(user: Id, project: Id, min_access, page_size: int, page_token: Id, min_snapshot_version: int) -> pb.Request:
    request = pb.Request()
    method = request.list_assets
    method.SetInParent()
    method.user = as_bytes(user, "user")
    project = as_bytes(project, "project")
    if project:
        method.project = project
    if min_access:
        method.min_access = min_access
    if page_size:
        method.page_size = page_size
    method.page_token = as_bytes(page_token, "page_token")
    return _header(request, min_snapshot_version)


def single_check_request(check, explain: bool = False, min_snapshot_version: int = 0) -> pb.Request:
    """The single call for one batch check (used by pipelined `check_many`)."""
    if isinstance(check, CanUseCheck):
        return can_use_request(check.user, check.asset, check.project, check.required_access, min_snapshot_version)
    if isinstance(check, PermissionCheck):
        return permission_request(check.user, check.project, check.required_level, explain, min_snapshot_version)
    if isinstance(check, SeatTypeCheck):
        return seat_type_request(check.user, min_snapshot_version)
    if isinstance(check, CapabilitiesCheck):
        return capabilities_request(check.user, min_snapshot_version)
    raise TypeError(
        "a check is a CanUseCheck, PermissionCheck, SeatTypeCheck or CapabilitiesCheck, "
        f"not {type(check).__name__}"
    )


# --- Answers -------------------------------------------------------------------------------


def parse_response(payload) -> pb.Response:
    try:
        return pb.Response.FromString(payload)
    except Exception as error:  # google.protobuf.message.DecodeError
        raise AuthzError(StatusCode.INTERNAL, f"the server's response could not be decoded: {error}") from None


def error_of(response: pb.Response) -> Optional[AuthzError]:
    """The AuthzError a response carries, or None for OK."""
    if response.HasField("status"):
        status = response.status
        if status.code != 0:
            return AuthzError(status.code, status.message, response.snapshot_version)
    return None


def _mismatch(response: pb.Response, expected: str) -> AuthzError:
    return AuthzError(
        StatusCode.INTERNAL,
        f"the server answered {response.WhichOneof('result') or 'no result'} to a call expecting {expected}",
    )


def _can_use(r, version: int) -> CanUseResult:
    try:
        return _CanUseResult(_ACCESSES[r.access], _REASONS[r.reason], r.allowed, version)
    except IndexError:
        _access(r.access), _reason(r.reason)
        raise


def _permission(r, version: int) -> PermissionResult:
    steps = r.steps
    if steps:
        steps = tuple(_Step(_reason(s.reason), _level(s.level), s.subject) for s in steps)
    else:
        steps = ()
    try:
        return _PermissionResult(_LEVELS[r.level], _REASONS[r.reason], r.allowed, steps, version)
    except IndexError:
        _level(r.level), _reason(r.reason)
        raise


def _seat(r, version: int) -> SeatResult:
    seat = _table(_SEATS, "Seat", r.seat)
    role = _table(_ROLES, "Role", r.role) if r.role else None
    source = _table(_ROLE_SOURCES, "RoleSource", r.role_source) if r.role_source else None
    return _SeatResult(seat, r.paid, role, source, r.plan_downgrade, version)


def _capabilities(r, version: int) -> CapabilitiesResult:
    return _CapabilitiesResult(tuple(_table(_CAPABILITIES, "Capability", c) for c in r.capabilities), version)


def decode_can_use(response: pb.Response) -> CanUseResult:
    if not response.HasField("can_use_result"):
        raise _mismatch(response, "can_use_result")
    r = response.can_use_result
    try:
        return _CanUseResult(_ACCESSES[r.access], _REASONS[r.reason], r.allowed, response.snapshot_version)
    except IndexError:
        _access(r.access), _reason(r.reason)
        raise


def decode_permission(response: pb.Response) -> PermissionResult:
    if not response.HasField("effective_permission_result"):
        raise _mismatch(response, "effective_permission_result")
    r = response.effective_permission_result
    if r.steps:
        return _permission(r, response.snapshot_version)
    try:
        return _PermissionResult(_LEVELS[r.level], _REASONS[r.reason], r.allowed, (), response.snapshot_version)
    except IndexError:
        _level(r.level), _reason(r.reason)
        raise


def decode_seat(response: pb.Response) -> SeatResult:
    if not response.HasField("seat_type_result"):
        raise _mismatch(response, "seat_type_result")
    return _seat(response.seat_type_result, response.snapshot_version)


def decode_capabilities(response: pb.Response) -> CapabilitiesResult:
    if not response.HasField("capabilities_result"):
        raise _mismatch(response, "capabilities_result")
    return _capabilities(response.capabilities_result, response.snapshot_version)


_CHECK_DECODERS = {
    "can_use_result": _can_use,
    "effective_permission_result": _permission,
    "seat_type_result": _seat,
    "capabilities_result": _capabilities,
}


def decode_batch(response: pb.Response) -> BatchResult:
    if not response.HasField("batch_result"):
        raise _mismatch(response, "batch_result")
    version = response.snapshot_version
    results = []
    for entry in response.batch_result.results:
        kind = entry.WhichOneof("kind")
        if kind is None:
            raise AuthzError(StatusCode.INTERNAL, "the server answered a batch result of no kind")
        results.append(_CHECK_DECODERS[kind](getattr(entry, kind), version))
    return BatchResult(tuple(results), version)


def decode_check(response: pb.Response):
    kind = response.WhichOneof("result")
    decoder = _CHECK_DECODERS.get(kind)
    if decoder is None:
        raise _mismatch(response, "a check result")
    return decoder(getattr(response, kind), response.snapshot_version)


def decode_status(response: pb.Response) -> StatusResult:
    if not response.HasField("status_result"):
        raise _mismatch(response, "status_result")
    r = response.status_result
    return StatusResult(
        r.snapshot_version, r.loaded_at_unix_ms, r.users, r.groups, r.assets, r.projects, r.grants,
        r.last_load_error, r.last_load_attempt_unix_ms, r.stale_for_ms, r.uptime_ms,
        r.connections_open, r.requests_served, r.last_load_method, r.watching,
    )


def decode_reload(response: pb.Response) -> int:
    if not response.HasField("reload_result"):
        raise _mismatch(response, "reload_result")
    return response.reload_result.snapshot_version


def _page(listing, version: int, items) -> Page:
    return Page(
        tuple(items), listing.next_page_token, listing.snapshot_changed, listing.page_size,
        listing.page_size_clamped, _reason(listing.reason) if listing.reason else None, version,
    )


def _level_page(response: pb.Response, field: str) -> Page:
    if not response.HasField(field):
        raise _mismatch(response, field)
    listing = getattr(response, field)
    items = (_LevelItem(i.id, _level(i.level), _reason(i.reason)) for i in listing.items)
    return _page(listing, response.snapshot_version, items)


def decode_list_projects(response: pb.Response) -> Page:
    return _level_page(response, "list_projects_result")


def decode_list_project_access(response: pb.Response) -> Page:
    return _level_page(response, "list_project_access_result")


def decode_list_assets(response: pb.Response) -> Page:
    if not response.HasField("list_assets_result"):
        raise _mismatch(response, "list_assets_result")
    listing = response.list_assets_result
    items = (_AccessItem(i.id, _access(i.access), _reason(i.reason)) for i in listing.items)
    return _page(listing, response.snapshot_version, items)


Decoder = Callable[[pb.Response], object]

"""The typed vocabulary of the sidecar's answers: enums, result dataclasses, the error type.

Enum values equal the wire values of proto/authz/v1/authz.proto; names drop the proto prefix
(``LEVEL_FULL_ACCESS`` is ``Level.FULL_ACCESS``). ``Level`` and ``Access`` are ``IntEnum``s
ordered lowest to highest, so ``level >= Level.CAN_EDIT`` reads as the rules do.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Tuple, Union


class StatusCode(enum.IntEnum):
    """gRPC status codes (the ``RpcStatus.code`` of a response)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class AuthzError(Exception):
    """The one error type: a call that could not be answered.

    ``code`` is a :class:`StatusCode`, ``message`` the server's (or the client's) text.
    Errors the client makes itself use the same codes: ``UNAVAILABLE`` when the daemon cannot
    be reached or the connection broke, ``DEADLINE_EXCEEDED`` when the call's timeout passed,
    ``RESOURCE_EXHAUSTED`` for a request over the frame limit, ``INTERNAL`` for an answer the
    client cannot read. ``snapshot_version`` is the server's, when it named one (e.g. with
    ``FAILED_PRECONDITION``), else 0.
    """

    def __init__(self, code: Union[StatusCode, int], message: str, snapshot_version: int = 0):
        try:
            code = StatusCode(code)
        except ValueError:
            pass
        self.code = code
        self.message = message
        self.snapshot_version = snapshot_version
        name = code.name if isinstance(code, StatusCode) else str(code)
        super().__init__(f"{name}: {message}")

    def __reduce__(self):
        return (type(self), (int(self.code), self.message, self.snapshot_version))


class Level(enum.IntEnum):
    """Project permission levels, lowest to highest (RULES.md §4)."""

    UNSPECIFIED = 0
    NONE = 1
    CAN_VIEW_APP = 2
    CAN_VIEW = 3
    CAN_EXPLORE = 4
    CAN_EDIT = 5
    FULL_ACCESS = 6


class Access(enum.IntEnum):
    """Workspace asset access, lowest to highest (RULES.md §5)."""

    UNSPECIFIED = 0
    NONE = 1
    VIEW = 2
    USE = 3


class Seat(enum.IntEnum):
    UNSPECIFIED = 0
    NONE = 1
    PAID_AUTHOR = 2
    PAID_EXPLORER = 3
    VIEWER = 4
    GUEST = 5


class Role(enum.IntEnum):
    """Workspace roles, lowest to highest privilege."""

    UNSPECIFIED = 0
    GUEST = 1
    VIEWER = 2
    EXPLORER = 3
    EDITOR = 4
    MANAGER = 5
    ADMIN = 6


class RoleSource(enum.IntEnum):
    UNSPECIFIED = 0
    DIRECTORY_MAPPING = 1
    DIRECTORY_DEFAULT = 2
    EXPLICIT = 3
    DOMAIN_DEFAULT = 4
    INVITE_DEFAULT = 5


class Capability(enum.IntEnum):
    """Role capabilities, in the order of RULES.md §3."""

    UNSPECIFIED = 0
    VIEW_ALL_PROJECTS = 1
    MANAGE_WORKSPACE_SETTINGS = 2
    SELF_GRANT_FULL_ACCESS = 3
    UPDATE_PROJECT_METADATA = 4
    USE_ENDORSED_STATUSES = 5
    CREATE_PROJECTS = 6
    USE_API = 7
    SCHEDULE_RUNS = 8
    BUILD_EXPLORATIONS = 9
    CONDITIONAL_NOTIFICATIONS = 10
    ACCESS_WORKSPACE_PROJECTS = 11
    ACCESS_SHARED_PROJECTS = 12
    ACCESS_WORKSPACE_APPS = 13
    ACCESS_SHARED_APPS = 14


class Reason(enum.IntEnum):
    """Every reason code an answer or an explanation step can carry."""

    UNSPECIFIED = 0
    UNKNOWN_USER = 1
    USER_INACTIVE = 2
    UNKNOWN_PROJECT = 3
    OWNER = 4
    USER_GRANT = 5
    GROUP_GRANT = 6
    WORKSPACE_SHARE = 7
    PUBLIC_SHARE = 8
    NO_GRANT = 9
    ADMIN_FLOOR = 10
    ROLE_CAP = 11
    EXPLORE_NEEDS_ROLE = 12
    ASSET_DOWNGRADE = 13
    UNKNOWN_ASSET = 14
    ADMIN = 15
    NOT_IN_ASSET_GROUPS = 16
    GROUP_ACCESS = 17
    ROLE_CANNOT_USE = 18
    PROJECT_NEEDS_CAN_EDIT = 19
    ANONYMOUS_PUBLIC = 20


# ---------------------------------------------------------------------------------------------
# Results. Every result names the snapshot it was computed from (`snapshot_version`): pass it
# as `min_snapshot_version` to a later call to read at least that new.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CanUseResult:
    access: Access
    reason: Reason
    #: ``access >= required_access``; False when the call gave no ``required_access``.
    allowed: bool
    snapshot_version: int


@dataclass(frozen=True, slots=True)
class Step:
    """One applied step of an EffectivePermission explanation (RULES.md §4)."""

    reason: Reason
    #: The level after this step.
    level: Level
    #: The group id or asset id the step names; "" when it names none.
    subject: str


@dataclass(frozen=True, slots=True)
class PermissionResult:
    level: Level
    reason: Reason
    #: ``level >= required_level``; False when the call gave no ``required_level``.
    allowed: bool
    #: The explanation, only when the call set ``explain=True``; else empty.
    steps: Tuple[Step, ...]
    snapshot_version: int


@dataclass(frozen=True, slots=True)
class SeatResult:
    seat: Seat
    paid: bool
    #: None when ``seat`` is ``Seat.NONE`` (an unknown or inactive user).
    role: Optional[Role]
    role_source: Optional[RoleSource]
    #: A resolved explorer became viewer because the plan has no Explorer role.
    plan_downgrade: bool
    snapshot_version: int


@dataclass(frozen=True, slots=True)
class CapabilitiesResult:
    #: In the order of the Capability enum; empty for an unknown or inactive user.
    capabilities: Tuple[Capability, ...]
    snapshot_version: int

    def __contains__(self, capability: Capability) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True, slots=True)
class StatusResult:
    snapshot_version: int
    loaded_at_unix_ms: int
    users: int
    groups: int
    assets: int
    projects: int
    grants: int
    #: "" when the last load attempt succeeded.
    last_load_error: str
    last_load_attempt_unix_ms: int
    stale_for_ms: int
    uptime_ms: int
    connections_open: int
    requests_served: int
    #: "full" or "delta": how the snapshot in service was built; "" before a load.
    last_load_method: str = ""
    #: Whether authzd's file watch covers the database now.
    watching: bool = False


@dataclass(frozen=True, slots=True)
class LevelItem:
    """One listed project (ListProjects) or user (ListProjectAccess) with its level."""

    id: str
    level: Level
    reason: Reason


@dataclass(frozen=True, slots=True)
class AccessItem:
    """One listed asset (ListAssets) with its access."""

    id: str
    access: Access
    reason: Reason


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a lookup. ``items`` are LevelItem (projects, project access) or AccessItem
    (assets), in id order. The listing is complete when ``next_page_token`` is empty (b"");
    a short page does not mean the end."""

    items: tuple
    next_page_token: bytes
    #: The token was issued at another snapshot: this page continues on a newer one.
    snapshot_changed: bool
    page_size: int
    page_size_clamped: bool
    #: Why the listing is empty (UNKNOWN_USER, USER_INACTIVE, UNKNOWN_PROJECT), else None.
    reason: Optional[Reason]
    snapshot_version: int


# ---------------------------------------------------------------------------------------------
# Checks for Batch: the four decisions.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CanUseCheck:
    user: str
    asset: str
    project: str = ""
    required_access: Optional[Access] = None


@dataclass(frozen=True, slots=True)
class PermissionCheck:
    user: str
    project: str
    required_level: Optional[Level] = None


@dataclass(frozen=True, slots=True)
class SeatTypeCheck:
    user: str


@dataclass(frozen=True, slots=True)
class CapabilitiesCheck:
    user: str


Check = Union[CanUseCheck, PermissionCheck, SeatTypeCheck, CapabilitiesCheck]
CheckResult = Union[CanUseResult, PermissionResult, SeatResult, CapabilitiesResult]


@dataclass(frozen=True, slots=True)
class BatchResult:
    #: One result per check, in request order, all from one snapshot.
    results: Tuple[CheckResult, ...]
    snapshot_version: int

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index):
        return self.results[index]


def _fast_constructor(cls):
    """A positional constructor of a frozen slots dataclass that skips the generated
    ``__init__`` (which goes through ``object.__setattr__`` once per field): the decoder
    builds every answer with it. Same object, same immutability, about 3x cheaper."""
    setters = tuple(cls.__dict__[name].__set__ for name in cls.__slots__)
    new = object.__new__
    if len(setters) == 2:
        s0, s1 = setters

        def make(a, b):
            obj = new(cls)
            s0(obj, a)
            s1(obj, b)
            return obj
    elif len(setters) == 3:
        s0, s1, s2 = setters

        def make(a, b, c):
            obj = new(cls)
            s0(obj, a)
            s1(obj, b)
            s2(obj, c)
            return obj
    elif len(setters) == 4:
        s0, s1, s2, s3 = setters

        def make(a, b, c, d):
            obj = new(cls)
            s0(obj, a)
            s1(obj, b)
            s2(obj, c)
            s3(obj, d)
            return obj
    else:
        def make(*values):
            obj = new(cls)
            for setter, value in zip(setters, values):
                setter(obj, value)
            return obj
    return make

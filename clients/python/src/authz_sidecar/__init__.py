"""A Python client of the authorization sidecar (authzd) over its Unix domain socket.

- :class:`Client`: synchronous, thread-safe, a small pool of connections.
- :class:`AsyncClient`: asyncio, one connection with many calls in flight.

Both have the same methods; answers are frozen dataclasses with Python enums, and every
failure is an :class:`AuthzError` carrying a gRPC :class:`StatusCode` and a message.
"""

from ._types import (
    Access,
    AccessItem,
    AuthzError,
    BatchResult,
    CanUseCheck,
    CanUseResult,
    Capability,
    CapabilitiesCheck,
    CapabilitiesResult,
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
from .client import DEFAULT, Client
from .aio import AsyncClient

__version__ = "0.1.0"

__all__ = [
    "Access", "AccessItem", "AsyncClient", "AuthzError", "BatchResult", "CanUseCheck", "CanUseResult",
    "Capability", "CapabilitiesCheck", "CapabilitiesResult", "Client", "DEFAULT", "Level", "LevelItem",
    "Page", "PermissionCheck", "PermissionResult", "Reason", "Role", "RoleSource", "Seat", "SeatResult",
    "SeatTypeCheck", "StatusCode", "StatusResult", "Step",
]

"""The asyncio client: one connection, many calls in flight, matched by call_id.

A protocol object parses the frames as they arrive (in the event loop's reader callback, the
"reader task") and resolves each call's future by call_id. A call that is cancelled or times
out removes its future; its answer, arriving later, is dropped; the connection stays usable.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import struct
import time
from typing import AsyncIterator, Dict, Optional, Sequence

from . import _codec as c
from ._types import (
    Access,
    AccessItem,
    AuthzError,
    BatchResult,
    CanUseResult,
    Capability,
    CapabilitiesResult,
    Level,
    LevelItem,
    Page,
    PermissionResult,
    SeatResult,
    StatusCode,
    StatusResult,
)
from .client import DEFAULT

log = logging.getLogger("authz_sidecar")

_HEADER_UNPACK = struct.Struct(">BI").unpack_from


class _Broken(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _Protocol(asyncio.Protocol):
    def __init__(self, max_response: int):
        self.max_response = max_response
        self.transport: Optional[asyncio.Transport] = None
        self.pending: Dict[int, asyncio.Future] = {}
        self.buf = bytearray()
        self.closed = False
        self.paused = False
        self.drain_waiters: list = []
        self.next_id = 1
        self.loop = None
        self.outgoing: list = []
        # The deadlines of calls with the client's default timeout, in the order they were
        # made, hence in deadline order: one timer for the earliest instead of one per call.
        self.deadlines: collections.deque = collections.deque()
        self.sweeper = None
        self.timeout = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        if buf:
            buf += data
            data = buf
        pos = 0
        end = len(data)
        pending = self.pending
        try:
            while end - pos >= 5:
                flag, size = _HEADER_UNPACK(data, pos)
                if flag != 0:
                    raise _Broken(f"the server sent a frame with flag {flag}")
                if size > self.max_response:
                    raise _Broken(f"the server announced a {size}-byte response, over the {self.max_response}-byte limit")
                if end - pos - 5 < size:
                    break
                response = c.parse_response(data[pos + 5 : pos + 5 + size])
                pos += 5 + size
                future = pending.pop(response.call_id, None)
                if future is not None:
                    if not future.done():
                        future.set_result(response)
                elif response.call_id == 0:
                    error = c.error_of(response)
                    if error is not None:  # a framing error: the server closes the connection
                        self._fail(error)
                        return
                # else: the answer of a cancelled or timed-out call, dropped
        except (_Broken, AuthzError) as error:
            self._fail(error)
            return
        if buf:
            del buf[:pos]
        elif pos < end:
            self.buf = bytearray(data[pos:])

    def _fail(self, error: BaseException) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._fail_pending(error)

    def _fail_pending(self, error: BaseException) -> None:
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_exception(_Broken("connection lost while writing"))
        self.drain_waiters = []

    def connection_lost(self, exc) -> None:
        self.closed = True
        reason = f"connection lost: {exc}" if exc else "the server closed the connection"
        self._fail_pending(_Broken(reason))

    def send(self, data: bytes) -> None:
        """Queues a frame; the frames queued in one turn of the event loop go out in one write
        (one system call for many pipelined calls)."""
        if not self.outgoing:
            self.loop.call_soon(self._flush)
        self.outgoing.append(data)

    def _flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if not self.closed and self.transport is not None:
            self.transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def watch(self, deadline: float, future: asyncio.Future) -> None:
        """Expires `future` at `deadline` (loop time), unless done before; deadlines must be
        watched in increasing order."""
        self.deadlines.append((deadline, future))
        if self.sweeper is None:
            self.sweeper = self.loop.call_at(deadline, self._sweep)

    def trim(self) -> None:
        deadlines = self.deadlines
        while deadlines and deadlines[0][1].done():
            deadlines.popleft()

    def _sweep(self) -> None:
        self.sweeper = None
        now = self.loop.time()
        deadlines = self.deadlines
        while deadlines:
            deadline, future = deadlines[0]
            if future.done():
                deadlines.popleft()
            elif deadline <= now:
                deadlines.popleft()
                _expire(future, self.timeout)
            else:
                self.sweeper = self.loop.call_at(deadline, self._sweep)
                break

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        if self.paused and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            self.drain_waiters.append(waiter)
            await waiter


def _expire(future: asyncio.Future, timeout: float) -> None:
    if not future.done():
        future.set_exception(AuthzError(StatusCode.DEADLINE_EXCEEDED, f"no answer within {timeout:.3f} s (client deadline)"))


class AsyncClient:
    """An asyncio client of one authzd socket: one connection, any number of calls in flight.

    ::

        client = AsyncClient("/run/authzd/authz.sock")
        if await client.allowed("ada", "payroll", Level.CAN_EDIT):
            ...
        await client.close()

    Same methods, arguments and answers as :class:`Client`, with ``await``. A broken
    connection is re-established by the next call; calls in flight when it broke are retried
    once (reads; ``Reload`` is not). Cancelling a call (``task.cancel()``,
    ``asyncio.wait_for``) drops only that call. Use it from one event loop.
    """

    def __init__(
        self,
        socket_path: str,
        *,
        timeout: Optional[float] = 5.0,
        connect_timeout: Optional[float] = 1.0,
        max_request_size: int = c.DEFAULT_MAX_REQUEST_SIZE,
        max_response_size: int = c.DEFAULT_MAX_RESPONSE_SIZE,
    ):
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_request_size = max_request_size
        self.max_response_size = max_response_size
        # [0]: the connection of every call; [1]: opened for calls with a consistency token
        # newer than any answer seen, which the server may hold (and every call behind them
        # on their connection): they do not stall the others.
        self._protocols: list = [None, None]
        self._connecting: list = [None, None]
        self._seen_version = 0
        self._pid = os.getpid()
        self._inherited: list = []
        self._closed = False

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def _protocol(self) -> Optional[_Protocol]:
        return self._protocols[0]

    async def close(self) -> None:
        self._closed = True
        protocols, self._protocols = self._protocols, [None, None]
        for protocol in protocols:
            if protocol is not None and protocol.transport is not None and self._pid == os.getpid():
                protocol.transport.close()

    async def connect(self) -> None:
        """Connects now (else the first call does), so a wrong path fails here."""
        await self._connection(0)

    async def _connection(self, slot: int) -> _Protocol:
        protocol = self._protocols[slot]
        loop = asyncio.get_running_loop()
        if protocol is not None and not protocol.closed and self._pid == os.getpid():
            if protocol.loop is loop:
                return protocol
            # Another event loop (a new asyncio.run): the old one's connection is unusable
            # here; drop it (closed with its socket object) and connect on this loop.
            self._protocols[slot] = None
        if self._pid != os.getpid():
            # A forked child: the parent's connections belong to the parent's event loop. Keep
            # them referenced (never closed through a loop whose epoll set we share with the
            # parent) and open our own.
            self._inherited.append(self._protocols)
            self._protocols = [None, None]
            self._connecting = [None, None]
            self._pid = os.getpid()
        if self._closed:
            raise AuthzError(StatusCode.UNAVAILABLE, "the client is closed")
        connecting = self._connecting[slot]
        if connecting is None or connecting.done() or connecting.get_loop() is not loop:
            connecting = self._connecting[slot] = loop.create_task(self._open(slot))
        return await asyncio.shield(connecting)

    async def _open(self, slot: int) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            coro = loop.create_unix_connection(lambda: _Protocol(self.max_response_size), self.socket_path)
            if self.connect_timeout is None:
                _, protocol = await coro
            else:
                _, protocol = await asyncio.wait_for(coro, self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as error:
            raise AuthzError(StatusCode.UNAVAILABLE, f"cannot connect to authzd at {self.socket_path}: {error or 'timed out'}") from None
        self._protocols[slot] = protocol
        return protocol

    async def _call(self, request, decode, timeout, retry: bool = True):
        if timeout is DEFAULT:
            timeout = self.timeout
        deadline = None
        if timeout is not None:
            deadline = time.monotonic() + timeout
            if request.min_snapshot_version:
                # The server is told the budget only when it may wait (see _codec.deadline_ms).
                request.deadline_ms = c.deadline_ms(timeout)
        default = timeout == self.timeout
        attempt = 0
        token = request.min_snapshot_version
        slot = 1 if token > self._seen_version else 0
        while True:
            protocol = self._protocols[slot]
            if (protocol is None or protocol.closed or self._pid != os.getpid()
                    or protocol.loop is not asyncio.get_running_loop()):
                protocol = await self._connection(slot)
            try:
                response = await self._roundtrip(protocol, request, deadline, default and attempt == 0)
                break
            except _Broken as broken:
                attempt += 1
                if not retry:
                    raise AuthzError(StatusCode.UNAVAILABLE,
                                     f"{broken.message} after the request was sent; it was not retried (it may have run)") from None
                if attempt > 1:
                    raise AuthzError(StatusCode.UNAVAILABLE, f"{broken.message} (after one retry on a new connection)") from None
                log.debug("authz_sidecar: %s; retrying once on a new connection", broken.message)
        if response.snapshot_version > self._seen_version:
            self._seen_version = response.snapshot_version
        if response.HasField("status") and response.status.code:
            raise c.error_of(response)
        return decode(response)

    async def _roundtrip(self, protocol: _Protocol, request, deadline: Optional[float], default: bool):
        call_id = protocol.next_id
        protocol.next_id = call_id + 1
        request.call_id = call_id
        data = c.frame(request.SerializeToString(), self.max_request_size)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        protocol.pending[call_id] = future
        handle = None
        try:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AuthzError(StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the request was sent")
                if default:
                    protocol.timeout = self.timeout
                    protocol.watch(loop.time() + remaining, future)
                else:
                    handle = loop.call_at(loop.time() + remaining, _expire, future, remaining)
            protocol.send(data)
            if protocol.paused:
                await protocol.drain()
            return await future
        finally:
            # Cancelled, timed out or answered: this call no longer waits; a late answer is
            # dropped by the protocol (no future for its call_id).
            if protocol.pending.get(call_id) is future:
                del protocol.pending[call_id]
            if handle is not None:
                handle.cancel()
            elif protocol.deadlines and protocol.deadlines[0][1] is future:
                protocol.trim()

    # --- pipelining --------------------------------------------------------------------

    async def check_many(self, checks: Sequence, *, explain: bool = False, min_snapshot_version: int = 0,
                         timeout=DEFAULT, return_exceptions: bool = False) -> list:
        """Asks many checks as separate calls, all in flight at once on the connection."""
        if timeout is DEFAULT:
            timeout = self.timeout
        calls = [self._call(c.single_check_request(check, explain, min_snapshot_version), c.decode_check, timeout)
                 for check in checks]
        return list(await asyncio.gather(*calls, return_exceptions=return_exceptions))

    # --- the methods -------------------------------------------------------------------

    async def can_use(self, user: str, asset: str, project: str = "", *, required_access: Optional[Access] = None,
                      min_snapshot_version: int = 0, timeout=DEFAULT) -> CanUseResult:
        return await self._call(c.can_use_request(user, asset, project, required_access, min_snapshot_version),
                                c.decode_can_use, timeout)

    async def effective_permission(self, user: str, project: str, *, required_level: Optional[Level] = None,
                                   explain: bool = False, min_snapshot_version: int = 0,
                                   timeout=DEFAULT) -> PermissionResult:
        return await self._call(c.permission_request(user, project, required_level, explain, min_snapshot_version),
                                c.decode_permission, timeout)

    async def seat_type(self, user: str, *, min_snapshot_version: int = 0, timeout=DEFAULT) -> SeatResult:
        return await self._call(c.seat_type_request(user, min_snapshot_version), c.decode_seat, timeout)

    async def capabilities(self, user: str, *, min_snapshot_version: int = 0, timeout=DEFAULT) -> CapabilitiesResult:
        return await self._call(c.capabilities_request(user, min_snapshot_version), c.decode_capabilities, timeout)

    async def batch(self, checks: Sequence, *, explain: bool = False, min_snapshot_version: int = 0,
                    timeout=DEFAULT) -> BatchResult:
        return await self._call(c.batch_request(checks, explain, min_snapshot_version), c.decode_batch, timeout)

    async def status(self, *, timeout=DEFAULT) -> StatusResult:
        return await self._call(c.status_request(), c.decode_status, timeout)

    async def reload(self, *, timeout=DEFAULT) -> int:
        return await self._call(c.reload_request(), c.decode_reload, timeout, retry=False)

    async def list_projects(self, user: c.Id, *, min_level: Optional[Level] = None, page_size: int = 0,
                            page_token: c.Id = b"", min_snapshot_version: int = 0, timeout=DEFAULT) -> Page:
        return await self._call(c.list_projects_request(user, min_level, page_size, page_token, min_snapshot_version),
                                c.decode_list_projects, timeout)

    async def list_project_access(self, project: c.Id, *, min_level: Optional[Level] = None, page_size: int = 0,
                                  page_token: c.Id = b"", min_snapshot_version: int = 0, timeout=DEFAULT) -> Page:
        return await self._call(
            c.list_project_access_request(project, min_level, page_size, page_token, min_snapshot_version),
            c.decode_list_project_access, timeout)

    async def list_assets(self, user: c.Id, project: c.Id = b"", *, min_access: Optional[Access] = None,
                          page_size: int = 0, page_token: c.Id = b"", min_snapshot_version: int = 0,
                          timeout=DEFAULT) -> Page:
        return await self._call(
            c.list_assets_request(user, project, min_access, page_size, page_token, min_snapshot_version),
            c.decode_list_assets, timeout)

    async def iter_projects(self, user: c.Id, *, min_level: Optional[Level] = None, page_size: int = 0,
                            min_snapshot_version: int = 0, timeout=DEFAULT) -> AsyncIterator[LevelItem]:
        token = b""
        while True:
            page = await self.list_projects(user, min_level=min_level, page_size=page_size, page_token=token,
                                            min_snapshot_version=min_snapshot_version, timeout=timeout)
            for item in page.items:
                yield item
            token = page.next_page_token
            if not token:
                return

    async def iter_project_access(self, project: c.Id, *, min_level: Optional[Level] = None, page_size: int = 0,
                                  min_snapshot_version: int = 0, timeout=DEFAULT) -> AsyncIterator[LevelItem]:
        token = b""
        while True:
            page = await self.list_project_access(project, min_level=min_level, page_size=page_size, page_token=token,
                                                  min_snapshot_version=min_snapshot_version, timeout=timeout)
            for item in page.items:
                yield item
            token = page.next_page_token
            if not token:
                return

    async def iter_assets(self, user: c.Id, project: c.Id = b"", *, min_access: Optional[Access] = None,
                          page_size: int = 0, min_snapshot_version: int = 0,
                          timeout=DEFAULT) -> AsyncIterator[AccessItem]:
        token = b""
        while True:
            page = await self.list_assets(user, project, min_access=min_access, page_size=page_size, page_token=token,
                                          min_snapshot_version=min_snapshot_version, timeout=timeout)
            for item in page.items:
                yield item
            token = page.next_page_token
            if not token:
                return

    # --- fail-closed helpers -------------------------------------------------------------

    async def allowed(self, user: str, project: str, level: Level = Level.CAN_VIEW, *, raise_on_error: bool = False,
                      min_snapshot_version: int = 0, timeout=DEFAULT) -> bool:
        try:
            return (await self.effective_permission(user, project, required_level=level,
                                                    min_snapshot_version=min_snapshot_version,
                                                    timeout=timeout)).allowed
        except AuthzError as error:
            if raise_on_error:
                raise
            log.warning("authz_sidecar: denying %r on project %r: %s", user, project, error)
            return False

    async def asset_allowed(self, user: str, asset: str, project: str = "", access: Access = Access.USE, *,
                            raise_on_error: bool = False, min_snapshot_version: int = 0, timeout=DEFAULT) -> bool:
        try:
            return (await self.can_use(user, asset, project, required_access=access,
                                       min_snapshot_version=min_snapshot_version, timeout=timeout)).allowed
        except AuthzError as error:
            if raise_on_error:
                raise
            log.warning("authz_sidecar: denying %r on asset %r: %s", user, asset, error)
            return False

    async def has_capability(self, user: str, capability: Capability, *, raise_on_error: bool = False,
                             min_snapshot_version: int = 0, timeout=DEFAULT) -> bool:
        try:
            return capability in (await self.capabilities(user, min_snapshot_version=min_snapshot_version,
                                                          timeout=timeout)).capabilities
        except AuthzError as error:
            if raise_on_error:
                raise
            log.warning("authz_sidecar: denying %r capability %s: %s", user, capability.name, error)
            return False

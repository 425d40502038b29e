"""The synchronous, thread-safe client: a small pool of connections to authzd's socket.

Each call checks a connection out of the pool, writes its frame and reads until the response
with its call_id arrives (late answers of calls that timed out earlier are skipped), then
returns the connection. No thread, no selector on the hot path: one ``sendall`` and usually
one ``recv_into``. ``check_many`` pipelines many calls on one connection.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import threading
import time
import weakref
from typing import Iterator, List, Optional, Sequence

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

log = logging.getLogger("authz_sidecar")

#: Passed as ``timeout`` (the default): use the client's default timeout.
DEFAULT = object()

_TIMEVAL = struct.Struct("@ll")
_SOL_SOCKET = socket.SOL_SOCKET
_SO_RCVTIMEO = socket.SO_RCVTIMEO
_SO_SNDTIMEO = socket.SO_SNDTIMEO
_NO_TIMEOUT = _TIMEVAL.pack(0, 0)
_HEADER_UNPACK = struct.Struct(">BI").unpack_from
_INITIAL_BUFFER = 64 * 1024


class _Broken(Exception):
    """The connection broke. ``sent``: the request may have reached the server."""

    def __init__(self, message: str, sent: bool):
        super().__init__(message)
        self.message = message
        self.sent = sent


def _connect_error(path: str, error: BaseException) -> AuthzError:
    return AuthzError(StatusCode.UNAVAILABLE, f"cannot connect to authzd at {path}: {error}")


class _Connection:
    """One socket with its receive buffer. Used by one thread at a time (the pool's lock)."""

    __slots__ = ("sock", "buf", "view", "start", "end", "next_id", "timeout", "max_response", "dead", "late")

    def __init__(self, path: str, connect_timeout: Optional[float], max_response: int):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(connect_timeout)
            sock.connect(path)
            sock.settimeout(None)  # blocking; timeouts are SO_RCVTIMEO/SO_SNDTIMEO (no poll per recv)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.buf = bytearray(_INITIAL_BUFFER)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.next_id = 1
        self.timeout: Optional[float] = None
        self.max_response = max_response
        self.dead = False
        self.late = True  # checked out on the slow path: the call's time may be partly spent

    def close(self) -> None:
        # close(), never shutdown(): after a fork the parent may still use this socket.
        try:
            self.sock.close()
        except OSError:
            pass

    def set_timeout(self, timeout: Optional[float]) -> None:
        if timeout == self.timeout:
            return
        if timeout is None:
            value = _NO_TIMEOUT
        else:
            seconds = int(timeout)
            micros = int((timeout - seconds) * 1e6)
            value = _TIMEVAL.pack(seconds, micros if seconds or micros else 1)  # 0 would mean "never"
        self.sock.setsockopt(_SOL_SOCKET, _SO_RCVTIMEO, value)
        self.sock.setsockopt(_SOL_SOCKET, _SO_SNDTIMEO, value)
        self.timeout = timeout

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except BlockingIOError:
            # SO_SNDTIMEO: part of the frame may be written; the stream is unusable.
            raise _Broken("timed out writing the request", sent=True) from None
        except OSError as error:
            # EPIPE / ECONNRESET: the server closed the connection before reading this
            # request (a restart, or an idle connection it closed): it was not delivered.
            raise _Broken(f"connection lost: {error}", sent=False) from None

    def frame(self):
        """The next complete frame's payload as (start, end) in the buffer, or None."""
        start = self.start
        if self.end - start >= 5:
            flag, size = _HEADER_UNPACK(self.buf, start)
            if self.end - start - 5 >= size:
                self.start = start + 5 + size
                if flag != 0:
                    raise _Broken(f"the server sent a frame with flag {flag}", sent=True)
                return start + 5, start + 5 + size
            if size > self.max_response:
                raise _Broken(f"the server announced a {size}-byte response, over the {self.max_response}-byte limit", sent=True)
        return None

    def fill(self, deadline: Optional[float], first: bool = False) -> None:
        """Reads more bytes (at least one) into the buffer, making room as needed. The first
        read of a call runs under the timeout set for the call; later ones under what is
        left of it."""
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buf):
            # Move the partial frame to the front; grow if one frame needs more room.
            pending = self.end - self.start
            need = pending
            if pending >= 5:
                need = max(pending, 5 + _HEADER_UNPACK(self.buf, self.start)[1])
            if self.start:
                self.buf[:pending] = self.buf[self.start : self.end]
                self.start, self.end = 0, pending
            if need > len(self.buf) - 0 and need > pending:
                self.view.release()
                self.buf.extend(bytes(need - len(self.buf)))
                self.view = memoryview(self.buf)
            elif self.end == len(self.buf):
                self.view.release()
                self.buf.extend(bytes(len(self.buf)))
                self.view = memoryview(self.buf)
        if deadline is not None and not first:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.set_timeout(remaining)
        try:
            n = self.sock.recv_into(self.view[self.end :])
        except BlockingIOError:
            raise TimeoutError from None  # SO_RCVTIMEO passed
        except OSError as error:
            raise _Broken(f"connection lost: {error}", sent=True) from None
        if n == 0:
            raise _Broken("the server closed the connection", sent=True)
        self.end += n

    def read(self, call_id: int, deadline: Optional[float], first: bool = True):
        """Reads frames until the response to `call_id`; skips late answers to other calls."""
        while True:
            span = self.frame()
            if span is None:
                self.fill(deadline, first)
                first = False
                continue
            response = c.parse_response(self.view[span[0] : span[1]])
            got = response.call_id
            if got == call_id:
                return response
            if got == 0:
                error = c.error_of(response)
                if error is not None:
                    # A framing error: the server closes the connection after it.
                    raise _FramingError(error)
            # else: the late answer to a call that timed out here; dropped.


class _FramingError(Exception):
    def __init__(self, error: AuthzError):
        super().__init__(str(error))
        self.error = error


_getpid = os.getpid
_monotonic = time.monotonic
_pack_header = struct.Struct(">BI").pack

_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._forget_inherited()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """A synchronous, thread-safe client of one authzd socket.

    ::

        client = Client("/run/authzd/authz.sock")
        if client.allowed("ada", "payroll", Level.CAN_EDIT):
            ...

    - ``pool_size`` connections at most (opened on demand); a call waits for a free one.
    - ``timeout`` (seconds, None = no limit): the default deadline of every call; each call
      may pass its own. The server is told the same budget (``deadline_ms``).
    - A broken connection is replaced and the call retried once on a fresh connection:
      every check, lookup and Status is a read, so retrying is safe. ``Reload`` is retried
      only when its request provably never reached the server (see README).
    - Fork safety: a child process never uses the parent's sockets; it opens its own.
    """

    def __init__(
        self,
        socket_path: str,
        *,
        pool_size: int = 4,
        timeout: Optional[float] = 5.0,
        connect_timeout: Optional[float] = 1.0,
        max_request_size: int = c.DEFAULT_MAX_REQUEST_SIZE,
        max_response_size: int = c.DEFAULT_MAX_RESPONSE_SIZE,
    ):
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.socket_path = os.fspath(socket_path)
        self.pool_size = pool_size
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_request_size = max_request_size
        self.max_response_size = max_response_size
        self._init_pool()
        self._closed = False
        _clients.add(self)

    @property
    def timeout(self) -> Optional[float]:
        """The default deadline of a call, in seconds (None: no limit)."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: Optional[float]) -> None:
        self._timeout = value

    def _init_pool(self) -> None:
        self._pid = _getpid()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._idle: List[_Connection] = []
        self._open = 0
        self._waiting = 0

    def _forget_inherited(self) -> None:
        # In a forked child: the parent's connections (and locks, which another thread of
        # the parent may have held) are not ours. Close our copies of the descriptors (the
        # parent's connections are unaffected: no shutdown) and start an empty pool.
        for conn in self._idle:
            conn.close()
        self._init_pool()

    # --- the pool ----------------------------------------------------------------------
    #
    # The idle connections are a list used as a stack: list.pop() and list.append() are
    # atomic under the GIL, so the fast path takes no lock. The lock guards the count of open
    # connections and the waiters; a waiter re-checks the stack every few milliseconds, so a
    # connection returned between its check and its wait is not missed for long.

    def _checkout(self, deadline: Optional[float]) -> _Connection:
        if self._pid != _getpid():
            self._forget_inherited()
        try:
            return self._idle.pop()
        except IndexError:
            pass
        with self._lock:
            while True:
                if self._idle:
                    conn = self._idle.pop()
                    conn.late = True
                    return conn
                if self._closed:
                    raise AuthzError(StatusCode.UNAVAILABLE, "the client is closed")
                if self._open < self.pool_size:
                    self._open += 1
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise AuthzError(StatusCode.DEADLINE_EXCEEDED, "no pooled connection became free before the deadline")
                self._waiting += 1
                try:
                    self._cond.wait(0.005 if remaining is None else min(remaining, 0.005))
                finally:
                    self._waiting -= 1
        return self._new_connection()

    def _new_connection(self) -> _Connection:
        try:
            return _Connection(self.socket_path, self.connect_timeout, self.max_response_size)
        except BaseException as error:
            with self._lock:
                self._open -= 1
                if self._waiting:
                    self._cond.notify()
            if isinstance(error, OSError):
                raise _connect_error(self.socket_path, error) from None
            raise

    def _checkin(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            with self._lock:
                self._open -= 1
            return
        self._idle.append(conn)
        if self._waiting:
            with self._lock:
                self._cond.notify()

    def _discard(self, conn: _Connection) -> None:
        """Drops a broken connection, and the idle ones: they likely lead to the same dead
        server (a restart breaks them all)."""
        conn.close()
        with self._lock:
            stale = []
            while True:
                try:
                    stale.append(self._idle.pop())
                except IndexError:
                    break
            self._open -= 1 + len(stale)
            if self._waiting:
                self._cond.notify_all()
        for other in stale:
            other.close()

    def close(self) -> None:
        """Closes the idle connections; calls in progress close theirs when done."""
        with self._lock:
            self._closed = True
            idle = []
            while True:
                try:
                    idle.append(self._idle.pop())
                except IndexError:
                    break
            self._open -= len(idle)
        for conn in idle:
            conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- one call ------------------------------------------------------------------------

    def _call(self, request, decode, timeout, retry: bool = True):
        if timeout is DEFAULT:
            timeout = self._timeout
        if timeout is None:
            deadline = None
        else:
            deadline = _monotonic() + timeout
            if request.min_snapshot_version:
                # The server is told the budget only when it may wait (see _codec.deadline_ms).
                request.deadline_ms = c.deadline_ms(timeout)
        conn = self._checkout(deadline)
        try:
            response = self._roundtrip(conn, request, timeout, deadline)
        except _Broken as broken:
            self._discard(conn)
            if not (retry or not broken.sent):
                raise AuthzError(
                    StatusCode.UNAVAILABLE,
                    f"{broken.message} after the request was sent; it was not retried (it may have run)",
                ) from None
            # One retry, on a fresh connection (the restarted server, if there is one).
            log.debug("authz_sidecar: %s; retrying once on a new connection", broken.message)
            conn = self._fresh()
            try:
                response = self._roundtrip(conn, request, timeout, deadline)
            except _Broken as again:
                self._discard(conn)
                raise AuthzError(StatusCode.UNAVAILABLE, f"{again.message} (after one retry on a new connection)") from None
            except BaseException as error:
                self._after_error(conn, error)
                raise
        except BaseException as error:
            self._after_error(conn, error)
            raise
        self._checkin(conn)
        if response.HasField("status") and response.status.code:
            raise c.error_of(response)
        return decode(response)

    def _fresh(self) -> _Connection:
        with self._lock:
            if self._closed:
                raise AuthzError(StatusCode.UNAVAILABLE, "the client is closed")
            self._open += 1
        return self._new_connection()

    def _after_error(self, conn: _Connection, error: BaseException) -> None:
        # Timeouts and client-side errors keep the connection (its buffer is consistent; a
        # late answer is skipped by call_id); anything unexpected drops it.
        if not conn.dead and isinstance(error, AuthzError) and error.code in (
                StatusCode.DEADLINE_EXCEEDED, StatusCode.RESOURCE_EXHAUSTED):
            self._checkin(conn)
        else:
            self._discard(conn)

    def _roundtrip(self, conn: _Connection, request, timeout: Optional[float], deadline: Optional[float]):
        call_id = conn.next_id
        conn.next_id = call_id + 1
        request.call_id = call_id
        payload = request.SerializeToString()
        size = len(payload)
        if size > self.max_request_size:
            c.frame(payload, self.max_request_size)  # raises the clear error
        if conn.late:
            conn.late = False
            if deadline is not None:
                timeout = deadline - _monotonic()
                if timeout <= 0:
                    raise AuthzError(StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the request was sent")
        if timeout != conn.timeout:
            conn.set_timeout(timeout)
        conn.send(_pack_header(0, size) + payload)
        # The fast path: nothing buffered, and one read brings exactly our answer.
        first = conn.start == conn.end
        if first:
            try:
                n = conn.sock.recv_into(conn.view)
            except BlockingIOError:
                raise AuthzError(StatusCode.DEADLINE_EXCEEDED, f"no answer within {timeout:.3f} s (client deadline)") from None
            except OSError as error:
                raise _Broken(f"connection lost: {error}", sent=True) from None
            if n == 0:
                raise _Broken("the server closed the connection", sent=True)
            conn.start = 0
            conn.end = n
            if n > 5:
                flag, length = _HEADER_UNPACK(conn.buf, 0)
                if n == length + 5 and not flag:
                    response = c.parse_response(conn.view[5:n])
                    if response.call_id == call_id:
                        conn.end = 0
                        return response
                    conn.start = n  # consumed; fall through to the general loop below
                    self._stray(conn, response)
        try:
            return conn.read(call_id, deadline, not first)
        except TimeoutError:
            raise AuthzError(StatusCode.DEADLINE_EXCEEDED, f"no answer within {timeout:.3f} s (client deadline)") from None
        except _FramingError as framing:
            conn.dead = True  # the server closes the connection after a framing error
            raise framing.error from None

    @staticmethod
    def _stray(conn: _Connection, response) -> None:
        """A response that is not the awaited one: a late answer (dropped), or a framing
        error (call_id 0), after which the server closes the connection."""
        if response.call_id == 0:
            error = c.error_of(response)
            if error is not None:
                conn.dead = True
                raise error

    # --- pipelining --------------------------------------------------------------------

    def check_many(
        self,
        checks: Sequence,
        *,
        explain: bool = False,
        min_snapshot_version: int = 0,
        timeout=DEFAULT,
        window: int = 256,
        return_exceptions: bool = False,
    ) -> list:
        """Asks many checks (CanUseCheck, PermissionCheck, SeatTypeCheck, CapabilitiesCheck)
        as separate calls pipelined on one connection, up to ``window`` in flight; returns the
        results in order. Unlike ``batch`` there is no limit of 256 and each answer may come
        from its own snapshot. ``timeout`` bounds the whole. With ``return_exceptions`` an
        error answer is returned in its place instead of raised."""
        if timeout is DEFAULT:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        requests = [c.single_check_request(check, explain, min_snapshot_version) for check in checks]
        if timeout is not None and min_snapshot_version:
            for request in requests:
                request.deadline_ms = c.deadline_ms(timeout)
        results: list = [None] * len(requests)
        done = 0
        attempts = 0
        while done < len(requests):
            conn = self._checkout(deadline)
            try:
                done = self._pipeline(conn, requests, results, done, window, deadline, return_exceptions)
            except _Broken as broken:
                self._discard(conn)
                attempts += 1
                if attempts > 1:
                    raise AuthzError(StatusCode.UNAVAILABLE, f"{broken.message} (after one retry on a new connection)") from None
                continue  # every check is a read: ask the unanswered ones again
            except BaseException as error:
                self._after_error(conn, error)
                raise
            self._checkin(conn)
        return results

    def _pipeline(self, conn, requests, results, done, window, deadline, return_exceptions) -> int:
        total = len(requests)
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise AuthzError(StatusCode.DEADLINE_EXCEEDED, "the deadline passed")
        conn.set_timeout(timeout)
        while done < total:
            chunk = range(done, min(total, done + window))
            first = conn.next_id
            frames = []
            for index in chunk:
                request = requests[index]
                request.call_id = first + (index - done)
                frames.append(c.frame(request.SerializeToString(), self.max_request_size))
            conn.next_id = first + len(chunk)
            conn.send(b"".join(frames))
            pending = len(chunk)
            while pending:
                span = conn.frame()
                if span is None:
                    try:
                        conn.fill(deadline)
                    except TimeoutError:
                        raise AuthzError(StatusCode.DEADLINE_EXCEEDED, "the pipelined calls did not all answer before the deadline") from None
                    continue
                response = c.parse_response(conn.view[span[0] : span[1]])
                index = response.call_id - first
                if not 0 <= index < len(chunk):
                    if response.call_id == 0 and c.error_of(response) is not None:
                        conn.dead = True
                        raise c.error_of(response)
                    continue  # a late answer of an earlier call
                if results[done + index] is None:
                    pending -= 1
                error = c.error_of(response)
                if error is not None:
                    if not return_exceptions:
                        raise error
                    results[done + index] = error
                else:
                    results[done + index] = c.decode_check(response)
            done += len(chunk)
        return done

    # --- the methods -------------------------------------------------------------------

    def can_use(self, user: str, asset: str, project: str = "", *, required_access: Optional[Access] = None,
                min_snapshot_version: int = 0, timeout=DEFAULT) -> CanUseResult:
        """CanUse(user, asset, project?) (RULES.md §5). ``project`` "" = not in a project."""
        return self._call(c.can_use_request(user, asset, project, required_access, min_snapshot_version),
                          c.decode_can_use, timeout)

    def effective_permission(self, user: str, project: str, *, required_level: Optional[Level] = None,
                             explain: bool = False, min_snapshot_version: int = 0, timeout=DEFAULT) -> PermissionResult:
        """EffectivePermission(user, project) (RULES.md §4); ``explain`` adds the steps."""
        return self._call(c.permission_request(user, project, required_level, explain, min_snapshot_version),
                          c.decode_permission, timeout)

    def seat_type(self, user: str, *, min_snapshot_version: int = 0, timeout=DEFAULT) -> SeatResult:
        return self._call(c.seat_type_request(user, min_snapshot_version), c.decode_seat, timeout)

    def capabilities(self, user: str, *, min_snapshot_version: int = 0, timeout=DEFAULT) -> CapabilitiesResult:
        return self._call(c.capabilities_request(user, min_snapshot_version), c.decode_capabilities, timeout)

    def batch(self, checks: Sequence, *, explain: bool = False, min_snapshot_version: int = 0,
              timeout=DEFAULT) -> BatchResult:
        """Several checks answered in order from one snapshot (at most 256 by default)."""
        return self._call(c.batch_request(checks, explain, min_snapshot_version), c.decode_batch, timeout)

    def status(self, *, timeout=DEFAULT) -> StatusResult:
        return self._call(c.status_request(), c.decode_status, timeout)

    def reload(self, *, timeout=DEFAULT) -> int:
        """Makes authzd reload its snapshot now; returns the version then in service. Allowed
        to the daemon's own Unix user and root only (else PERMISSION_DENIED). Not retried
        after a broken connection once it was sent (see README)."""
        return self._call(c.reload_request(), c.decode_reload, timeout, retry=False)

    # Lookups: one page, or an iterator over every item of every page.

    def list_projects(self, user: c.Id, *, min_level: Optional[Level] = None, page_size: int = 0,
                      page_token: c.Id = b"", min_snapshot_version: int = 0, timeout=DEFAULT) -> Page:
        return self._call(c.list_projects_request(user, min_level, page_size, page_token, min_snapshot_version),
                          c.decode_list_projects, timeout)

    def list_project_access(self, project: c.Id, *, min_level: Optional[Level] = None, page_size: int = 0,
                            page_token: c.Id = b"", min_snapshot_version: int = 0, timeout=DEFAULT) -> Page:
        return self._call(c.list_project_access_request(project, min_level, page_size, page_token, min_snapshot_version),
                          c.decode_list_project_access, timeout)

    def list_assets(self, user: c.Id, project: c.Id = b"", *, min_access: Optional[Access] = None, page_size: int = 0,
                    page_token: c.Id = b"", min_snapshot_version: int = 0, timeout=DEFAULT) -> Page:
        return self._call(c.list_assets_request(user, project, min_access, page_size, page_token, min_snapshot_version),
                          c.decode_list_assets, timeout)

    def iter_projects(self, user: c.Id, *, min_level: Optional[Level] = None, page_size: int = 0,
                      min_snapshot_version: int = 0, timeout=DEFAULT) -> Iterator[LevelItem]:
        """Every project ``user`` can open at ``min_level`` or more, following the pages."""
        return _follow(lambda token: self.list_projects(user, min_level=min_level, page_size=page_size, page_token=token,
                                                        min_snapshot_version=min_snapshot_version, timeout=timeout))

    def iter_project_access(self, project: c.Id, *, min_level: Optional[Level] = None, page_size: int = 0,
                            min_snapshot_version: int = 0, timeout=DEFAULT) -> Iterator[LevelItem]:
        return _follow(lambda token: self.list_project_access(project, min_level=min_level, page_size=page_size,
                                                              page_token=token, min_snapshot_version=min_snapshot_version,
                                                              timeout=timeout))

    def iter_assets(self, user: c.Id, project: c.Id = b"", *, min_access: Optional[Access] = None, page_size: int = 0,
                    min_snapshot_version: int = 0, timeout=DEFAULT) -> Iterator[AccessItem]:
        return _follow(lambda token: self.list_assets(user, project, min_access=min_access, page_size=page_size,
                                                      page_token=token, min_snapshot_version=min_snapshot_version,
                                                      timeout=timeout))

    # --- fail-closed helpers -------------------------------------------------------------

    def allowed(self, user: str, project: str, level: Level = Level.CAN_VIEW, *, raise_on_error: bool = False,
                min_snapshot_version: int = 0, timeout=DEFAULT) -> bool:
        """True when ``user`` has at least ``level`` on ``project``. Fails closed: any
        AuthzError (daemon down or restarting, deadline, overload, a bad id) is False unless
        ``raise_on_error``."""
        try:
            return self.effective_permission(user, project, required_level=level,
                                             min_snapshot_version=min_snapshot_version, timeout=timeout).allowed
        except AuthzError as error:
            if raise_on_error:
                raise
            log.warning("authz_sidecar: denying %r on project %r: %s", user, project, error)
            return False

    def asset_allowed(self, user: str, asset: str, project: str = "", access: Access = Access.USE, *,
                      raise_on_error: bool = False, min_snapshot_version: int = 0, timeout=DEFAULT) -> bool:
        """True when ``user`` can use ``asset`` (in ``project``) at ``access`` or more; fails
        closed like ``allowed``."""
        try:
            return self.can_use(user, asset, project, required_access=access,
                                min_snapshot_version=min_snapshot_version, timeout=timeout).allowed
        except AuthzError as error:
            if raise_on_error:
                raise
            log.warning("authz_sidecar: denying %r on asset %r: %s", user, asset, error)
            return False

    def has_capability(self, user: str, capability: Capability, *, raise_on_error: bool = False,
                       min_snapshot_version: int = 0, timeout=DEFAULT) -> bool:
        """True when ``user``'s role has ``capability``; fails closed like ``allowed``."""
        try:
            return capability in self.capabilities(user, min_snapshot_version=min_snapshot_version,
                                                   timeout=timeout).capabilities
        except AuthzError as error:
            if raise_on_error:
                raise
            log.warning("authz_sidecar: denying %r capability %s: %s", user, capability.name, error)
            return False


def _follow(fetch) -> Iterator:
    token = b""
    while True:
        page = fetch(token)
        yield from page.items
        token = page.next_page_token
        if not token:
            return

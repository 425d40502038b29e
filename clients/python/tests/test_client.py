"""The sync Client against a real authzd on the demo workspace."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest
from answers import as_json
from conftest import authzctl_check

from authz_sidecar import (
    Access,
    AccessItem,
    AuthzError,
    CanUseCheck,
    CanUseResult,
    Capability,
    CapabilitiesCheck,
    Client,
    Level,
    LevelItem,
    Page,
    PermissionCheck,
    PermissionResult,
    Reason,
    Role,
    Seat,
    SeatTypeCheck,
    StatusCode,
)

USER, PROJECT = "linus", "revenue-dashboard"


@pytest.fixture
def client(demo_daemon):
    with Client(demo_daemon.socket) as client:
        yield client


def test_every_method_answers_typed_results(client):
    permission = client.effective_permission(USER, PROJECT, required_level=Level.CAN_EDIT, explain=True)
    assert isinstance(permission, PermissionResult)
    assert (permission.level, permission.reason, permission.allowed) == (Level.FULL_ACCESS, Reason.OWNER, True)
    assert permission.steps and permission.steps[-1].level == Level.FULL_ACCESS
    assert permission.snapshot_version == 1
    assert client.effective_permission(USER, PROJECT).steps == ()  # steps only with explain
    assert client.effective_permission(USER, PROJECT).allowed is False  # no required_level asked

    use = client.can_use(USER, "dc-warehouse", required_access=Access.USE)
    assert isinstance(use, CanUseResult) and use.access == Access.USE and use.allowed

    seat = client.seat_type(USER)
    assert seat.seat == Seat.PAID_AUTHOR and seat.paid and isinstance(seat.role, Role)
    nobody = client.seat_type("nobody-at-all")
    assert (nobody.seat, nobody.role, nobody.role_source) == (Seat.NONE, None, None)

    capabilities = client.capabilities(USER)
    assert Capability.USE_API in capabilities and all(isinstance(c, Capability) for c in capabilities.capabilities)
    assert client.capabilities("nobody-at-all").capabilities == ()

    status = client.status()
    assert (status.snapshot_version, status.users, status.projects) == (1, 27, 9)
    assert status.last_load_error == ""
    assert status.last_load_method == "full"  # the daemon's first load
    assert status.watching

    assert client.reload() == 1  # we are the daemon's user: Reload is allowed


def test_results_match_authzctl(client, demo_db):
    queries = [
        {"op": "effective_permission", "user": u, "project": p}
        for u in ("linus", "ada", "grace", "sophie", "", "ghost") for p in ("revenue-dashboard", "infra-costs", "nope")
    ] + [{"op": "can_use", "user": u, "asset": "dc-warehouse"} for u in ("linus", "ada", "ghost")]
    expected = authzctl_check(demo_db, queries)
    for q, line in zip(queries, expected):
        if q["op"] == "can_use":
            got = client.can_use(q["user"], q["asset"])
        else:
            got = client.effective_permission(q["user"], q["project"], explain=True)
        assert as_json(got) == line, q


def test_batch_and_pipelined_checks(client):
    checks = [
        CanUseCheck(USER, "dc-warehouse", required_access=Access.VIEW),
        PermissionCheck(USER, PROJECT, Level.CAN_VIEW),
        SeatTypeCheck(USER),
        CapabilitiesCheck(USER),
    ]
    batch = client.batch(checks)
    assert len(batch) == 4 and batch.snapshot_version == 1
    assert batch[0].allowed and batch[1].allowed and batch[2].seat == Seat.PAID_AUTHOR
    assert client.batch([]).results == ()
    many = client.check_many(checks * 300)  # more than a batch may hold, 256 per window
    assert len(many) == 1200 and many[:4] == list(batch.results)
    errors = client.check_many([PermissionCheck(USER, ""), SeatTypeCheck(USER)], return_exceptions=True)
    assert isinstance(errors[0], AuthzError) and errors[0].code == StatusCode.INVALID_ARGUMENT
    assert errors[1].seat == Seat.PAID_AUTHOR


def test_lookups_follow_pages_and_accept_str_or_bytes(client, demo_db):
    expected = authzctl_check(demo_db, [{"op": "list_projects", "user": USER, "all": True}])
    items = list(client.iter_projects(USER, page_size=1))
    assert all(isinstance(i, LevelItem) for i in items)
    assert [(i.id, i.level.name.lower(), i.reason.name.lower()) for i in items] == [
        (e["id"], e["level"], e["reason"]) for e in expected]
    assert list(client.iter_projects(USER.encode())) == items

    page = client.list_projects(USER, page_size=2)
    assert isinstance(page, Page) and len(page.items) <= 2 and isinstance(page.next_page_token, bytes)
    rest = client.list_projects(USER, page_size=100, page_token=page.next_page_token.decode())  # str token
    assert list(page.items) + list(rest.items) == items and rest.next_page_token == b""

    access = authzctl_check(demo_db, [{"op": "list_project_access", "project": PROJECT, "min_level": "can_edit", "all": True}])
    users = list(client.iter_project_access(PROJECT, min_level=Level.CAN_EDIT, page_size=3))
    assert [u.id for u in users] == [e["id"] for e in access] and all(u.level >= Level.CAN_EDIT for u in users)

    assets = authzctl_check(demo_db, [{"op": "list_assets", "user": USER, "all": True}])
    got = list(client.iter_assets(USER, page_size=1))
    assert all(isinstance(a, AccessItem) for a in got) and [a.id for a in got] == [e["id"] for e in assets]

    unknown = client.list_projects("ghost-user")
    assert unknown.items == () and unknown.reason == Reason.UNKNOWN_USER
    assert client.list_assets(USER, page_size=5000).page_size_clamped
    with pytest.raises(AuthzError) as error:
        client.list_projects(USER, page_token="not a token")
    assert error.value.code == StatusCode.INVALID_ARGUMENT and "page_token" in error.value.message


def test_errors_carry_code_and_message(client):
    with pytest.raises(AuthzError) as error:
        client.effective_permission(USER, "")
    assert error.value.code == StatusCode.INVALID_ARGUMENT
    assert error.value.message == "effective_permission.project: the id is empty"
    with pytest.raises(AuthzError) as error:
        client.can_use("bad id with spaces", "x")
    assert error.value.code == StatusCode.INVALID_ARGUMENT
    with pytest.raises(AuthzError) as error:
        client.list_projects(b"ab\x00cd")
    assert error.value.code == StatusCode.INVALID_ARGUMENT and "0x00" in error.value.message
    # Over the 64 KiB frame limit: a clear error before sending, and the connection lives on.
    with pytest.raises(AuthzError) as error:
        client.batch([SeatTypeCheck("u" * 100)] * 1000)
    assert error.value.code == StatusCode.RESOURCE_EXHAUSTED and "65536" in error.value.message
    # Over the server's batch limit (256 checks).
    with pytest.raises(AuthzError) as error:
        client.batch([SeatTypeCheck("u")] * 300)
    assert error.value.code == StatusCode.RESOURCE_EXHAUSTED
    assert client.seat_type(USER).seat == Seat.PAID_AUTHOR


def test_fail_closed_helpers(client, tmp_path):
    assert client.allowed(USER, PROJECT, Level.FULL_ACCESS) is True
    assert client.allowed("ada", PROJECT, Level.FULL_ACCESS) is False
    assert client.asset_allowed(USER, "dc-warehouse") is True
    assert client.has_capability(USER, Capability.USE_API) is True
    # A bad id is a denial too, unless asked to raise.
    assert client.allowed(USER, "") is False
    with pytest.raises(AuthzError):
        client.allowed(USER, "", raise_on_error=True)
    # The daemon unreachable: False, fast; or the error when asked.
    gone = Client(str(tmp_path / "no-daemon.sock"))
    started = time.monotonic()
    assert gone.allowed(USER, PROJECT) is False
    assert gone.asset_allowed(USER, "dc-warehouse") is False
    assert gone.has_capability(USER, Capability.USE_API) is False
    with pytest.raises(AuthzError) as error:
        gone.allowed(USER, PROJECT, raise_on_error=True)
    assert error.value.code == StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 1.0
    # A deadline: False.
    assert client.allowed(USER, PROJECT, min_snapshot_version=10**9, timeout=0.1) is False


def test_daemon_gone_is_a_clear_fast_error(tmp_path):
    client = Client(str(tmp_path / "nothing-here.sock"))
    started = time.monotonic()
    with pytest.raises(AuthzError) as error:
        client.effective_permission(USER, PROJECT)
    assert time.monotonic() - started < 1.0
    assert error.value.code == StatusCode.UNAVAILABLE
    assert "cannot connect to authzd at" in error.value.message and "nothing-here.sock" in error.value.message


def test_daemon_stopped_while_connected_is_unavailable_fast(own_daemon):
    client = Client(own_daemon.socket)
    assert client.allowed(USER, PROJECT, Level.FULL_ACCESS)
    own_daemon.stop()
    started = time.monotonic()
    with pytest.raises(AuthzError) as error:
        client.effective_permission(USER, PROJECT)
    assert error.value.code == StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 1.0


def test_daemon_restarted_mid_use(own_daemon):
    client = Client(own_daemon.socket, pool_size=4)
    assert client.effective_permission(USER, PROJECT).level == Level.FULL_ACCESS
    # A restart between calls: the pooled connection is stale; the call reconnects, no error.
    own_daemon.restart()
    assert client.effective_permission(USER, PROJECT).level == Level.FULL_ACCESS
    own_daemon.stop(signal.SIGKILL)  # a crash, not a clean stop
    own_daemon.start()
    assert client.can_use(USER, "dc-warehouse").access == Access.USE

    # Threads asking all the time while the daemon restarts: every answer is right; the only
    # errors are UNAVAILABLE while no daemon listens.
    wrong, errors, answered = [], [], [0]
    stop = threading.Event()

    def ask():
        while not stop.is_set():
            try:
                result = client.effective_permission("ada", PROJECT)
                if (result.level, result.reason) != (Level.CAN_EDIT, Reason.GROUP_GRANT):
                    wrong.append(result)
                answered[0] += 1
            except AuthzError as error:
                errors.append(error.code)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    own_daemon.restart()
    time.sleep(0.3)
    before = answered[0]
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join()
    assert not wrong
    assert set(errors) <= {StatusCode.UNAVAILABLE}, errors
    assert answered[0] > before  # answering again after the restart
    assert client.effective_permission("ada", PROJECT).level == Level.CAN_EDIT


def test_deadlines(client, tmp_path):
    # The server holds a request for a snapshot it does not have until the deadline, then
    # answers FAILED_PRECONDITION naming the version in service; within the client's timeout.
    started = time.monotonic()
    with pytest.raises(AuthzError) as error:
        client.effective_permission(USER, PROJECT, min_snapshot_version=10**9, timeout=0.3)
    elapsed = time.monotonic() - started
    assert error.value.code in (StatusCode.FAILED_PRECONDITION, StatusCode.DEADLINE_EXCEEDED)
    assert error.value.code == StatusCode.FAILED_PRECONDITION and error.value.snapshot_version == 1
    assert 0.2 < elapsed < 0.6
    # A token the server has: answered at once.
    assert client.effective_permission(USER, PROJECT, min_snapshot_version=1).snapshot_version >= 1

    # A server that never answers: the client's deadline, DEADLINE_EXCEEDED, on time.
    path = str(tmp_path / "silent.sock")
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(path)
    silent.listen()
    try:
        mute = Client(path, timeout=0.2)
        started = time.monotonic()
        with pytest.raises(AuthzError) as error:
            mute.status()
        assert error.value.code == StatusCode.DEADLINE_EXCEEDED
        assert 0.15 < time.monotonic() - started < 0.5
        started = time.monotonic()
        with pytest.raises(AuthzError) as error:
            mute.seat_type(USER, timeout=0.05)  # a per-call timeout
        assert error.value.code == StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 0.3
    finally:
        silent.close()


def test_late_answer_of_a_timed_out_call_is_skipped(demo_daemon):
    client = Client(demo_daemon.socket, pool_size=1)
    with pytest.raises(AuthzError):
        # The client gives up before the server answers (FAILED_PRECONDITION, later).
        client.effective_permission(USER, PROJECT, min_snapshot_version=10**9, timeout=0.2)
    # The same connection: its next answer is its own, not the late one.
    result = client.seat_type("ada")
    assert result.seat == Seat.PAID_AUTHOR and result.role == Role.ADMIN
    assert client.effective_permission(USER, PROJECT).level == Level.FULL_ACCESS


def test_threads_share_the_pool(demo_daemon):
    client = Client(demo_daemon.socket, pool_size=3)
    results, failures = [], []

    def work(user, project, level):
        for _ in range(200):
            got = client.effective_permission(user, project)
            if got.level != level:
                failures.append((user, got))
        results.append(user)

    cases = [("linus", PROJECT, Level.FULL_ACCESS), ("ada", PROJECT, Level.CAN_EDIT),
             ("ghost", PROJECT, Level.NONE), ("annie", PROJECT, Level.CAN_VIEW)] * 2
    threads = [threading.Thread(target=work, args=case) for case in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures and len(results) == len(cases)
    assert client._open <= 3


def test_forked_child_uses_its_own_connections(demo_daemon):
    client = Client(demo_daemon.socket, pool_size=2)
    assert client.effective_permission(USER, PROJECT).level == Level.FULL_ACCESS
    parent_conn = client._idle[-1]
    parent_fd = parent_conn.sock.fileno()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_end)
            inherited = [c for c in client._idle]
            ok = not inherited  # the parent's connections were dropped at fork
            answers = [client.effective_permission(USER, PROJECT).level == Level.FULL_ACCESS,
                       client.seat_type("ada").role == Role.ADMIN,
                       client.can_use(USER, "dc-warehouse").access == Access.USE]
            ok = ok and all(answers) and client._idle and client._idle[-1] is not parent_conn
            os.write(write_end, b"ok" if ok else b"wrong")
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    verdict = os.read(read_end, 16)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert verdict == b"ok" and os.WEXITSTATUS(status) == 0
    # The parent's connection still works, unchanged (the child closed only its copy).
    assert parent_conn.sock.fileno() == parent_fd
    for _ in range(20):
        assert client.effective_permission(USER, PROJECT).level == Level.FULL_ACCESS
        assert client.seat_type("ada").role == Role.ADMIN
    assert client._idle[-1] is parent_conn


def test_closed_client(demo_daemon):
    client = Client(demo_daemon.socket)
    client.status()
    client.close()
    with pytest.raises(AuthzError) as error:
        client.status()
    assert error.value.code == StatusCode.UNAVAILABLE

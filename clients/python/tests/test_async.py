"""The AsyncClient against a real authzd on the demo workspace."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from authz_sidecar import (
    Access,
    AsyncClient,
    AuthzError,
    Capability,
    Level,
    PermissionCheck,
    Reason,
    Role,
    Seat,
    SeatTypeCheck,
    StatusCode,
)

USER, PROJECT = "linus", "revenue-dashboard"
EXPECTED = {"linus": Level.FULL_ACCESS, "ada": Level.CAN_EDIT, "annie": Level.CAN_VIEW, "ghost": Level.NONE}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_every_method(demo_daemon):
    async def main():
        async with AsyncClient(demo_daemon.socket) as client:
            await client.connect()
            p = await client.effective_permission(USER, PROJECT, required_level=Level.CAN_EDIT, explain=True)
            assert p.allowed and p.level == Level.FULL_ACCESS and p.steps
            assert (await client.can_use(USER, "dc-warehouse")).access == Access.USE
            assert (await client.seat_type("ada")).role == Role.ADMIN
            assert Capability.USE_API in await client.capabilities(USER)
            batch = await client.batch([PermissionCheck(USER, PROJECT), SeatTypeCheck("ada")])
            assert batch[0].level == Level.FULL_ACCESS and batch[1].seat == Seat.PAID_AUTHOR
            many = await client.check_many([PermissionCheck(u, PROJECT) for u in EXPECTED] * 100)
            assert [r.level for r in many] == list(EXPECTED.values()) * 100
            assert (await client.status()).projects == 9
            assert await client.reload() == 1
            projects = [i.id async for i in client.iter_projects(USER, page_size=1)]
            assert projects == [i.id for i in (await client.list_projects(USER, page_size=100)).items]
            assert [a.id async for a in client.iter_assets(b"linus", page_size=2)]
            assert [u.id async for u in client.iter_project_access(PROJECT, min_level=Level.FULL_ACCESS)] == ["linus"]
            assert (await client.list_projects("ghost")).reason == Reason.UNKNOWN_USER
            with pytest.raises(AuthzError) as error:
                await client.effective_permission(USER, "")
            assert error.value.code == StatusCode.INVALID_ARGUMENT
            assert await client.allowed(USER, PROJECT, Level.FULL_ACCESS)
            assert not await client.allowed("ada", PROJECT, Level.FULL_ACCESS)
            assert await client.asset_allowed(USER, "dc-warehouse")
            assert await client.has_capability(USER, Capability.USE_API)

    run(main())


def test_a_thousand_concurrent_calls_on_one_connection(demo_daemon):
    async def main():
        async with AsyncClient(demo_daemon.socket) as client:
            users = list(EXPECTED) * 250
            results = await asyncio.gather(*(client.effective_permission(u, PROJECT) for u in users))
            assert [r.level for r in results] == [EXPECTED[u] for u in users]
            assert len(results) == 1000
            status = await client.status()
            assert status.connections_open >= 1
            return client._protocol

    protocol = run(main())
    assert protocol is not None


def test_cancellation_leaves_the_connection_usable(demo_daemon):
    async def main():
        async with AsyncClient(demo_daemon.socket) as client:
            await client.connect()
            protocol = client._protocol
            # A call the server holds (a snapshot it does not have), cancelled by its caller.
            task = asyncio.ensure_future(client.effective_permission(USER, PROJECT, min_snapshot_version=10**9, timeout=0.5))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not protocol.pending  # its future is gone
            # Cancelled by a timeout around it.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.effective_permission(USER, PROJECT, min_snapshot_version=10**9, timeout=0.5), 0.05)
            held = client._protocols[1]  # calls the server may hold go on a connection of their own
            assert held is not None and held is not protocol and not held.pending
            # The connection answers the next calls at once, rightly, while those are held.
            started = time.monotonic()
            results = await asyncio.gather(*(client.effective_permission(u, PROJECT) for u in EXPECTED))
            assert [r.level for r in results] == list(EXPECTED.values())
            assert time.monotonic() - started < 0.3
            # Cancel plain calls in flight too.
            tasks = [asyncio.ensure_future(client.seat_type("ada")) for _ in range(50)]
            await asyncio.sleep(0)
            for task in tasks[::2]:
                task.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(d, asyncio.CancelledError) or d.role == Role.ADMIN for d in done)
            assert client._protocol is protocol and not protocol.closed and not protocol.pending
            await asyncio.sleep(0.6)  # the held calls' answers arrive now, for nobody
            assert (await client.seat_type("ada")).role == Role.ADMIN
            assert (await client.effective_permission(USER, PROJECT, min_snapshot_version=1)).level == Level.FULL_ACCESS
            assert client._protocol is protocol and client._protocols[1] is held and not held.closed

    run(main())


def test_deadlines(demo_daemon):
    async def main():
        async with AsyncClient(demo_daemon.socket) as client:
            started = time.monotonic()
            with pytest.raises(AuthzError) as error:
                await client.effective_permission(USER, PROJECT, min_snapshot_version=10**9, timeout=0.3)
            assert error.value.code == StatusCode.FAILED_PRECONDITION and error.value.snapshot_version == 1
            assert 0.2 < time.monotonic() - started < 0.6
            # A call queued behind a held one on the same connection: the client's deadline.
            held = asyncio.ensure_future(client.effective_permission(USER, PROJECT, min_snapshot_version=10**9, timeout=1.0))
            await asyncio.sleep(0.02)
            started = time.monotonic()
            with pytest.raises(AuthzError) as error:
                await client.seat_type(USER, min_snapshot_version=10**8, timeout=0.1)
            assert error.value.code == StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 0.4
            with pytest.raises(AuthzError):
                await held
            assert (await client.seat_type("ada")).role == Role.ADMIN
            # Fails closed on a deadline.
            assert await client.allowed(USER, PROJECT, min_snapshot_version=10**9, timeout=0.1) is False

        # The client's default timeout (one timer for the calls in flight), on calls held up
        # behind a held one on their connection.
        async with AsyncClient(demo_daemon.socket, timeout=0.2) as client:
            await client.status()
            held = asyncio.ensure_future(client.effective_permission(USER, PROJECT, min_snapshot_version=10**9, timeout=1.0))
            await asyncio.sleep(0.02)
            started = time.monotonic()
            behind = await asyncio.gather(*(client.seat_type(USER, min_snapshot_version=10**8) for _ in range(20)),
                                          return_exceptions=True)
            assert all(isinstance(e, AuthzError) and e.code == StatusCode.DEADLINE_EXCEEDED for e in behind)
            assert 0.15 < time.monotonic() - started < 0.5
            with pytest.raises(AuthzError):
                await held
            assert (await client.seat_type("ada")).role == Role.ADMIN

    run(main())


def test_daemon_gone(tmp_path):
    async def main():
        client = AsyncClient(str(tmp_path / "none.sock"))
        started = time.monotonic()
        with pytest.raises(AuthzError) as error:
            await client.status()
        assert error.value.code == StatusCode.UNAVAILABLE and "cannot connect to authzd" in error.value.message
        assert await client.allowed(USER, PROJECT) is False
        assert time.monotonic() - started < 1.0

    run(main())


def test_daemon_restarted_mid_use(own_daemon):
    async def main():
        async with AsyncClient(own_daemon.socket) as client:
            assert (await client.effective_permission(USER, PROJECT)).level == Level.FULL_ACCESS
            await asyncio.get_running_loop().run_in_executor(None, own_daemon.restart)
            # The next calls reconnect; no error, right answers.
            results = await asyncio.gather(*(client.effective_permission(u, PROJECT) for u in EXPECTED))
            assert [r.level for r in results] == list(EXPECTED.values())

            # Calls in flight while the daemon is killed and restarted: right answers or
            # UNAVAILABLE, never a wrong one; and answers again afterwards.
            wrong, errors = [], []
            stop = False

            async def ask(user):
                while not stop:
                    try:
                        r = await client.effective_permission(user, PROJECT)
                        if r.level != EXPECTED[user]:
                            wrong.append((user, r))
                    except AuthzError as error:
                        errors.append(error.code)
                        await asyncio.sleep(0.01)

            tasks = [asyncio.ensure_future(ask(u)) for u in list(EXPECTED) * 8]
            await asyncio.sleep(0.2)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: own_daemon.stop(signal.SIGKILL))
            await loop.run_in_executor(None, own_daemon.start)
            await asyncio.sleep(0.3)
            stop = True
            await asyncio.gather(*tasks)
            assert not wrong
            assert set(errors) <= {StatusCode.UNAVAILABLE}, errors
            assert (await client.seat_type("ada")).role == Role.ADMIN

    run(main())


def test_forked_child(demo_daemon):
    async def parent_calls(client):
        return [(await client.effective_permission(u, PROJECT)).level for u in EXPECTED]

    client = AsyncClient(demo_daemon.socket)
    assert run(parent_calls(client)) == list(EXPECTED.values())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            inherited = client._protocol
            got = asyncio.run(parent_calls(client))
            ok = got == list(EXPECTED.values()) and client._protocol is not inherited
            os.write(write_end, b"ok" if ok else b"wrong")
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    verdict = os.read(read_end, 16)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert verdict == b"ok" and os.WEXITSTATUS(status) == 0
    # (A new event loop in the parent: a new connection; the parent's answers are right.)
    assert run(parent_calls(client)) == list(EXPECTED.values())

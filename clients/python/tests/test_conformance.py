"""Every check of ../shared/conformance asked through the Python client, sync and async, gives
the same answer as `authzctl check --db` on the same database, and what the file expects."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from answers import as_json, mismatches, name
from conftest import Daemon, authzctl_check, conformance_dir, write_workspace

from authz_sidecar import (
    Access,
    AsyncClient,
    CanUseCheck,
    CapabilitiesCheck,
    Client,
    Level,
    PermissionCheck,
    SeatTypeCheck,
)

LOOKUPS = ("list_projects", "list_project_access", "list_assets")


def _file_names() -> list:
    directory = conformance_dir()
    if not directory.is_dir():
        return ["<the conformance folder is missing>"]
    return sorted(p.name for p in directory.glob("*.json")) or ["<the conformance folder is empty>"]


def _load(file_name: str) -> dict:
    directory = conformance_dir()
    assert directory.is_dir(), f"conformance folder missing: {directory} (expected ../shared/conformance beside the repository)"
    path = directory / file_name
    assert path.is_file(), f"{path} is not a conformance file"
    return json.loads(path.read_text())


def test_the_conformance_folder_has_files():
    directory = conformance_dir()
    assert directory.is_dir(), f"conformance folder missing: {directory}"
    assert list(directory.glob("*.json")), f"no *.json in {directory}"


def _question(check: dict) -> dict:
    return {k: v for k, v in check.items() if k != "expect"}


def _sync_answer(client: Client, q: dict):
    op = q["op"]
    if op == "effective_permission":
        return client.effective_permission(q["user"], q["project"], explain=True)
    if op == "can_use":
        return client.can_use(q["user"], q["asset"], q.get("project", ""))
    if op == "seat_type":
        return client.seat_type(q["user"])
    if op == "capabilities":
        return client.capabilities(q["user"])
    raise AssertionError(f"unknown op {op}")


async def _async_answer(client: AsyncClient, q: dict):
    op = q["op"]
    if op == "effective_permission":
        return await client.effective_permission(q["user"], q["project"], explain=True)
    if op == "can_use":
        return await client.can_use(q["user"], q["asset"], q.get("project", ""))
    if op == "seat_type":
        return await client.seat_type(q["user"])
    if op == "capabilities":
        return await client.capabilities(q["user"])
    raise AssertionError(f"unknown op {op}")


def _check_of(q: dict):
    op = q["op"]
    if op == "effective_permission":
        return PermissionCheck(q["user"], q["project"])
    if op == "can_use":
        return CanUseCheck(q["user"], q["asset"], q.get("project", ""))
    if op == "seat_type":
        return SeatTypeCheck(q["user"])
    return CapabilitiesCheck(q["user"])


def _lookup_kwargs(q: dict) -> dict:
    kwargs = {}
    if "min_level" in q:
        kwargs["min_level"] = Level[q["min_level"].upper()]
    if "min_access" in q:
        kwargs["min_access"] = Access[q["min_access"].upper()]
    return kwargs


def _sync_listing(client: Client, q: dict) -> list:
    op, kwargs = q["op"], _lookup_kwargs(q)
    if op == "list_projects":
        return list(client.iter_projects(q["user"], page_size=2, **kwargs))
    if op == "list_project_access":
        return list(client.iter_project_access(q["project"], page_size=2, **kwargs))
    return list(client.iter_assets(q["user"], q.get("project", ""), page_size=2, **kwargs))


async def _async_listing(client: AsyncClient, q: dict) -> list:
    op, kwargs = q["op"], _lookup_kwargs(q)
    if op == "list_projects":
        iterator = client.iter_projects(q["user"], page_size=2, **kwargs)
    elif op == "list_project_access":
        iterator = client.iter_project_access(q["project"], page_size=2, **kwargs)
    else:
        iterator = client.iter_assets(q["user"], q.get("project", ""), page_size=2, **kwargs)
    return [item async for item in iterator]


def _item_json(item, version: int) -> dict:
    value = {"level": name(item.level)} if hasattr(item, "level") else {"access": name(item.access)}
    return {"id": item.id, **value, "reason": name(item.reason), "snapshot_version": version}


@pytest.mark.parametrize("file_name", _file_names())
def test_scenario(file_name, tmp_path):
    scenario = _load(file_name)
    if "workspace" not in scenario:
        assert scenario.get("invalid_documents"), f"{file_name}: neither a workspace with checks nor invalid_documents"
        return  # invalid documents only: nothing to ask a daemon
    checks = scenario.get("checks") or []
    assert checks, f"{file_name}: a workspace without checks"
    db = write_workspace(tmp_path, scenario["workspace"])

    decisions = [(i, _question(c)) for i, c in enumerate(checks) if c["op"] not in LOOKUPS]
    lookups = [(i, _question(c)) for i, c in enumerate(checks) if c["op"] in LOOKUPS]
    local = authzctl_check(db, [q for _, q in decisions])
    assert len(local) == len(decisions)
    local_listings = [authzctl_check(db, [{**q, "all": True}]) for _, q in lookups]

    socket = f"/tmp/authz-py-{os.getpid()}-conf.sock"
    daemon = Daemon(db, socket).start()
    try:
        version = local[0]["snapshot_version"] if local else None

        # Sync: one call per check.
        with Client(socket) as client:
            for (index, q), expected in zip(decisions, local):
                answer = as_json(_sync_answer(client, q))
                assert answer == expected, f"{file_name} checks[{index}] {q}: sync client {answer} vs authzctl {expected}"
                problems = mismatches(checks[index].get("expect", {}), answer)
                assert not problems, f"{file_name} checks[{index}] {q}: {problems}"
            # The same checks as one batch, from one snapshot (explain for the steps).
            if decisions:
                batch = client.batch([_check_of(q) for _, q in decisions], explain=True)
                assert [as_json(r) for r in batch] == local, f"{file_name}: batch vs authzctl"
                # And pipelined as separate calls on one connection.
                many = client.check_many([_check_of(q) for _, q in decisions], explain=True)
                assert [as_json(r) for r in many] == local, f"{file_name}: check_many vs authzctl"
            for (index, q), expected in zip(lookups, local_listings):
                items = _sync_listing(client, q)
                got = [_item_json(item, expected[0]["snapshot_version"] if expected else 0) for item in items]
                assert got == expected, f"{file_name} checks[{index}] {q}: sync listing {got} vs authzctl {expected}"

        # Async: every check in flight at once on one connection.
        async def ask_all():
            async with AsyncClient(socket) as client:
                answers = await asyncio.gather(*(_async_answer(client, q) for _, q in decisions))
                listings = [await _async_listing(client, q) for _, q in lookups]
                return answers, listings

        answers, listings = asyncio.run(ask_all())
        for (index, q), answer, expected in zip(decisions, answers, local):
            assert as_json(answer) == expected, f"{file_name} checks[{index}] {q}: async client {as_json(answer)} vs authzctl {expected}"
        for (index, q), items, expected in zip(lookups, listings, local_listings):
            got = [_item_json(item, expected[0]["snapshot_version"] if expected else 0) for item in items]
            assert got == expected, f"{file_name} checks[{index}] {q}: async listing vs authzctl"
        if version is not None:
            assert all(a.snapshot_version == version for a in answers)
    finally:
        daemon.stop()

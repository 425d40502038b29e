"""Typed results rendered as `authzctl check` prints answers (Sources/AuthzQuery)."""

from authz_sidecar import CanUseResult, CapabilitiesResult, PermissionResult, Seat, SeatResult


def name(value) -> str:
    return value.name.lower()


def as_json(result) -> dict:
    if isinstance(result, PermissionResult):
        steps = []
        for step in result.steps:
            entry = {"reason": name(step.reason), "level": name(step.level)}
            if step.subject:
                entry["subject"] = step.subject
            steps.append(entry)
        return {"level": name(result.level), "reason": name(result.reason), "steps": steps,
                "snapshot_version": result.snapshot_version}
    if isinstance(result, CanUseResult):
        return {"access": name(result.access), "reason": name(result.reason), "snapshot_version": result.snapshot_version}
    if isinstance(result, SeatResult):
        out = {"seat": name(result.seat), "paid": result.paid}
        if result.role is not None:
            out["role"] = name(result.role)
        if result.role_source is not None:
            out["role_source"] = name(result.role_source)
        if result.seat != Seat.NONE:
            out["plan_downgrade"] = result.plan_downgrade
        out["snapshot_version"] = result.snapshot_version
        return out
    if isinstance(result, CapabilitiesResult):
        return {"capabilities": [name(c) for c in result.capabilities], "snapshot_version": result.snapshot_version}
    raise TypeError(type(result))


def mismatches(expect: dict, answer: dict) -> list:
    """As Tests/ConformanceSupport's: each expected key matches exactly; has/lacks name
    capabilities present/absent."""
    problems = []
    capabilities = set(answer.get("capabilities", []))
    for key, value in expect.items():
        if key == "has":
            problems += [f"lacks capability {c}" for c in value if c not in capabilities]
        elif key == "lacks":
            problems += [f"has capability {c}" for c in value if c in capabilities]
        elif answer.get(key) != value:
            problems.append(f"{key}: expected {value!r}, got {answer.get(key)!r}")
    if answer.get("seat") == "none" and ("role" in answer or "role_source" in answer):
        problems.append("seat none must carry no role")
    return problems

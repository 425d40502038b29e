// From a decoded request to its response: the engine's decisions mapped onto the wire
// results. Pure and synchronous: no I/O, no locks, no allocation beyond the response.

import AuthzEngine
import AuthzWire

enum RequestProcessor {
    /// The response to `request`, answered from `snapshot` (the one snapshot read for this
    /// read batch); `status` is only called for Status requests.
    static func respond(
        to request: WireRequest, snapshot: Snapshot?, lastLoadError: () -> String?,
        status: () -> WireResponse.StatusResult
    ) -> WireResponse {
        switch request.method {
        case .status:
            let result = status()
            return WireResponse(callId: request.callId, snapshotVersion: result.snapshotVersion, answer: .status(result))
        case .reload:
            return WireResponse(
                callId: request.callId,
                error: WireError(
                    .unimplemented, "Reload is not implemented by this server yet; restart authzd to load a new snapshot"),
                snapshotVersion: snapshot?.version ?? 0)
        case .check(let check):
            guard let snapshot, snapshot.version >= request.minSnapshotVersion else {
                return unusable(request, snapshot, lastLoadError)
            }
            return WireResponse(
                callId: request.callId, snapshotVersion: snapshot.version,
                answer: .check(evaluate(check, explain: request.explain, in: snapshot)))
        case .batch(let batch):
            guard let snapshot, snapshot.version >= request.minSnapshotVersion else {
                return unusable(request, snapshot, lastLoadError)
            }
            var results: [WireResponse.CheckResult] = []
            results.reserveCapacity(batch.count)
            for check in batch {
                results.append(evaluate(check, explain: request.explain, in: snapshot))
            }
            return WireResponse(callId: request.callId, snapshotVersion: snapshot.version, answer: .batch(results))
        }
    }

    /// Why the snapshot cannot answer `request`: none is loaded (UNAVAILABLE), or it is
    /// older than the request's `min_snapshot_version` (FAILED_PRECONDITION, naming the
    /// version in service; waiting for a newer one is a later issue).
    private static func unusable(
        _ request: WireRequest, _ snapshot: Snapshot?, _ lastLoadError: () -> String?
    ) -> WireResponse {
        guard let snapshot else {
            var message = "no workspace snapshot is loaded"
            if let error = lastLoadError() { message += " (last load error: \(error))" }
            return WireResponse(callId: request.callId, error: WireError(.unavailable, message))
        }
        return WireResponse(
            callId: request.callId,
            error: WireError(
                .failedPrecondition,
                "the snapshot in service is version \(snapshot.version), older than min_snapshot_version \(request.minSnapshotVersion)"
            ),
            snapshotVersion: snapshot.version)
    }

    /// One decision from `snapshot`.
    static func evaluate(_ check: WireRequest.Check, explain: Bool, in snapshot: Snapshot) -> WireResponse.CheckResult {
        switch check {
        case .effectivePermission(let query):
            let decision = snapshot.effectivePermission(snapshot.userKey(query.user), snapshot.projectKey(query.project))
            var steps: [WireResponse.Step] = []
            if explain {
                steps = snapshot.explain(decision).map {
                    WireResponse.Step(reason: $0.reason, level: $0.level, subject: $0.subject ?? "")
                }
            }
            return .effectivePermission(
                WireResponse.EffectivePermissionResult(
                    level: decision.level, reason: decision.reason, steps: steps,
                    allowed: query.allowed(decision.level)))
        case .canUse(let query):
            let decision = snapshot.canUse(
                snapshot.userKey(query.user), snapshot.assetKey(query.asset),
                project: query.project.map { snapshot.projectKey($0) })
            return .canUse(
                WireResponse.CanUseResult(
                    access: decision.access, reason: decision.reason, allowed: query.allowed(decision.access)))
        case .seatType(let user):
            let decision = snapshot.seatType(snapshot.userKey(user))
            return .seatType(
                WireResponse.SeatTypeResult(
                    seat: decision.seat, paid: decision.paid, role: decision.role, roleSource: decision.roleSource,
                    planDowngrade: decision.planDowngrade))
        case .capabilities(let user):
            return .capabilities(Array(snapshot.capabilities(snapshot.userKey(user))))
        }
    }
}

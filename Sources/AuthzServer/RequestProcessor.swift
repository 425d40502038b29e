// From a decoded request to its response: the engine's decisions mapped onto the wire
// results. Pure and synchronous: no I/O, no locks, no allocation beyond the response.

import AuthzEngine
import AuthzWire

enum RequestProcessor {
    /// What to do with a decoded request.
    enum Disposition {
        /// Answer now.
        case respond(WireResponse)
        /// A check whose `min_snapshot_version` is newer than the snapshot in service (or
        /// none is loaded): wait for a reload, up to the deadline.
        case waitForVersion(UInt64)
        /// A Reload request.
        case reload
    }

    /// Decides `request` against `snapshot` (the one snapshot read for this read batch).
    /// Checks are refused while the snapshot is too stale to answer from (--max-staleness).
    static func dispose(_ request: WireRequest, snapshot: Snapshot?, server: ServerContext) -> Disposition {
        switch request.method {
        case .status:
            let result = server.status()
            return .respond(
                WireResponse(callId: request.callId, snapshotVersion: result.snapshotVersion, answer: .status(result)))
        case .reload:
            return .reload
        case .check, .batch, .lookup:
            guard let snapshot, snapshot.version >= request.minSnapshotVersion else {
                if request.minSnapshotVersion > 0 { return .waitForVersion(request.minSnapshotVersion) }
                return .respond(unavailable(request, server.snapshots.current.lastLoadError))
            }
            if let reason = server.failClosedReason() {
                return .respond(
                    WireResponse(
                        callId: request.callId, error: WireError(.unavailable, reason), snapshotVersion: snapshot.version))
            }
            return .respond(answer(request, from: snapshot))
        }
    }

    /// The answer to a check, batch or lookup from `snapshot` (which satisfies the request).
    static func answer(_ request: WireRequest, from snapshot: Snapshot) -> WireResponse {
        switch request.method {
        case .check(let check):
            return WireResponse(
                callId: request.callId, snapshotVersion: snapshot.version,
                answer: .check(evaluate(check, explain: request.explain, in: snapshot)))
        case .batch(let batch):
            var results: [WireResponse.CheckResult] = []
            results.reserveCapacity(batch.count)
            for check in batch {
                results.append(evaluate(check, explain: request.explain, in: snapshot))
            }
            return WireResponse(callId: request.callId, snapshotVersion: snapshot.version, answer: .batch(results))
        case .lookup(let lookup):
            do {
                return WireResponse(
                    callId: request.callId, snapshotVersion: snapshot.version, answer: .lookup(try page(lookup, in: snapshot)))
            } catch {
                return WireResponse(
                    callId: request.callId, error: WireError(.invalidArgument, "\(lookup.fieldPrefix).\(error)"),
                    snapshotVersion: snapshot.version)
            }
        case .status, .reload:
            return WireResponse(
                callId: request.callId, error: WireError(.internal, "not a check: \(request.method)"),
                snapshotVersion: snapshot.version)
        }
    }

    /// The answer after waiting for `min_snapshot_version`: from `snapshot` if it is new
    /// enough, else FAILED_PRECONDITION naming the version in service (UNAVAILABLE if none).
    static func answerAfterWaiting(_ request: WireRequest, snapshot: Snapshot?, server: ServerContext) -> WireResponse {
        guard let snapshot else { return unavailable(request, server.snapshots.current.lastLoadError) }
        guard snapshot.version >= request.minSnapshotVersion else {
            return WireResponse(
                callId: request.callId,
                error: WireError(
                    .failedPrecondition,
                    "the snapshot in service is version \(snapshot.version), older than min_snapshot_version \(request.minSnapshotVersion), and no newer one was loaded before the deadline"
                ),
                snapshotVersion: snapshot.version)
        }
        if let reason = server.failClosedReason() {
            return WireResponse(
                callId: request.callId, error: WireError(.unavailable, reason), snapshotVersion: snapshot.version)
        }
        return answer(request, from: snapshot)
    }

    /// How long `request` may wait for a newer snapshot, counted from when it was read: its
    /// `deadline_ms`, or the server's default, at most `ServerConfiguration.maxDeadline`.
    static func waitBudget(_ request: WireRequest, _ configuration: ServerConfiguration) -> Duration {
        let requested: Duration =
            request.deadlineMs > 0 ? .milliseconds(Int64(request.deadlineMs)) : configuration.defaultDeadline
        return min(requested, ServerConfiguration.maxDeadline)
    }

    /// A fast-path check's answer from `snapshot`, given its ids' keys (`FastKeys`).
    static func answer(_ check: FastCheck, keys: FastKeys, in snapshot: Snapshot) -> FastAnswer {
        switch check.kind {
        case .effectivePermission(_, _, let required):
            let decision = snapshot.effectivePermission(keys.user, keys.entity)
            return .permission(decision, allowed: required.map { decision.level >= $0 } ?? false)
        case .canUse(_, _, _, let required):
            let decision = snapshot.canUse(keys.user, keys.entity, project: keys.project)
            return .access(decision, allowed: required.map { decision.access >= $0 } ?? false)
        case .seatType:
            return .seat(snapshot.seatType(keys.user))
        }
    }

    /// The reloader a Reload may run on, or the refusal to send instead: this server has
    /// no reloader, or the peer (its SO_PEERCRED credentials, nil when unreadable) may not
    /// reload.
    static func reloader(
        for callId: UInt64, in server: ServerContext, peer: PeerCredentials?
    ) -> Result<SnapshotReloader, ReloadRefused> {
        let served = server.snapshots.snapshot?.version ?? 0
        guard let reloader = server.reloader else {
            return .failure(
                ReloadRefused(
                    response: WireResponse(
                        callId: callId, error: WireError(.unimplemented, "this server was started without a reloader"),
                        snapshotVersion: served)))
        }
        if let peer, server.reloadAllowed(peer.uid) { return .success(reloader) }
        let who = peer.map { "Unix user \($0.uid)" } ?? "a peer whose credentials cannot be read"
        return .failure(
            ReloadRefused(
                response: WireResponse(
                    callId: callId,
                    error: WireError(
                        .permissionDenied, "Reload is allowed only to the daemon's own Unix user and root, not to \(who)"),
                    snapshotVersion: served)))
    }

    struct ReloadRefused: Error {
        var response: WireResponse
    }

    /// A request that waited behind an earlier one on its connection until its own
    /// deadline passed.
    static func deadlinePassedInQueue(_ request: WireRequest) -> WireResponse {
        WireResponse(
            callId: request.callId,
            error: WireError(
                .deadlineExceeded,
                "the deadline of \(request.deadlineMs) ms passed while the request waited behind an earlier one on this connection"
            ))
    }

    /// The answer to a Reload once it ran.
    static func reloadResponse(callId: UInt64, outcome: ReloadOutcome) -> WireResponse {
        let version = outcome.snapshot?.version ?? 0
        guard let error = outcome.error else {
            return WireResponse(callId: callId, snapshotVersion: version, answer: .reload(.init(snapshotVersion: version)))
        }
        let serving = outcome.snapshot == nil ? "no snapshot is in service" : "still serving version \(version)"
        return WireResponse(
            callId: callId, error: WireError(.unavailable, "the reload failed; \(serving): \(error)"),
            snapshotVersion: version)
    }

    private static func unavailable(_ request: WireRequest, _ lastLoadError: String?) -> WireResponse {
        var message = "no workspace snapshot is loaded"
        if let lastLoadError { message += " (last load error: \(lastLoadError))" }
        return WireResponse(callId: request.callId, error: WireError(.unavailable, message))
    }

    /// One page of a listing from `snapshot`; a bad page token or minimum is the engine's
    /// `LookupError` (INVALID_ARGUMENT).
    static func page(_ lookup: WireRequest.Lookup, in snapshot: Snapshot) throws(LookupError) -> WireResponse.LookupResult {
        // The listings keep the engine's entries; their ids are written from the snapshot's
        // id arena when the response is encoded (no string per item).
        switch lookup {
        case .projects(let query):
            let page = try snapshot.listProjects(
                user: query.user, minLevel: query.minLevel ?? .canViewApp, pageSize: Int(query.pageSize),
                pageToken: query.pageToken)
            return .projects(WireResponse.Listing(page: page, ids: snapshot.projectIds))
        case .projectAccess(let query):
            let page = try snapshot.listProjectAccess(
                project: query.project, minLevel: query.minLevel ?? .canViewApp, pageSize: Int(query.pageSize),
                pageToken: query.pageToken)
            return .projectAccess(WireResponse.Listing(page: page, ids: snapshot.userIds))
        case .assets(let query):
            let page = try snapshot.listAssets(
                user: query.user, project: query.project, minAccess: query.minAccess ?? .view,
                pageSize: Int(query.pageSize), pageToken: query.pageToken)
            return .assets(WireResponse.Listing(page: page, ids: snapshot.assetIds))
        }
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

/// The snapshot keys of a fast-path check's ids.
struct FastKeys {
    var user: UserKey
    /// The project (EffectivePermission) or the asset (CanUse); unknown for SeatType.
    var entity: EntityKey
    /// CanUse's project, if any.
    var project: EntityKey?

    // Inlined: called once per check of a fast run, and as a call it cost a retain and a
    // release of the snapshot per check (atomic updates of one cache line that both event
    // loops write: the line then bounces between the cores).
    @inline(__always)
    init(_ check: FastCheck, in snapshot: Snapshot) {
        switch check.kind {
        case .effectivePermission(let user, let project, _):
            self.user = snapshot.userKey(utf8: user)
            entity = snapshot.projectKey(utf8: project)
            self.project = nil
        case .canUse(let user, let asset, let project, _):
            self.user = snapshot.userKey(utf8: user)
            entity = snapshot.assetKey(utf8: asset)
            self.project = project.map { snapshot.projectKey(utf8: $0) }
        case .seatType(let user):
            self.user = snapshot.userKey(utf8: user)
            entity = .unknown
            self.project = nil
        }
    }
}

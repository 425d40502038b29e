// What a connection records in the decision log: the request's method and ids, and the
// outcome its response carries. Called on the loop's thread, into the loop's ring.

import AuthzEngine
import AuthzWire

/// A connection's handle on the decision log: the log's filters and the loop's ring.
struct DecisionRecorder {
    let log: DecisionLog
    let ring: DecisionRing

    /// The decisions of a request answered by the general path (a check, each check of a
    /// batch, a lookup page), or its error. Status and Reload are not decisions.
    func record(
        _ request: WireRequest, _ response: WireResponse, peer: (pid: Int32, uid: UInt32),
        receivedAt: ContinuousClock.Instant
    ) {
        let latencyNanos = (ContinuousClock.now - receivedAt).wholeNanoseconds
        let failed = response.status.code != .ok ? response.status.code : nil
        switch request.method {
        case .check(let check):
            guard log.wants(check.decisionMethod, on: ring) else { return }
            var outcome = DecisionRecord.Outcome.error(failed ?? .internal)
            if failed == nil, case .check(let result) = response.answer { outcome = result.outcome(for: check) }
            record(check, outcome, request, response, peer, latencyNanos, batchIndex: nil)
        case .batch(let checks):
            var results: [WireResponse.CheckResult]?
            if failed == nil, case .batch(let answered) = response.answer, answered.count == checks.count { results = answered }
            for (index, check) in checks.enumerated() where log.wants(check.decisionMethod, on: ring) {
                let outcome = results.map { $0[index].outcome(for: check) } ?? .error(failed ?? .internal)
                record(check, outcome, request, response, peer, latencyNanos, batchIndex: index)
            }
        case .lookup(let lookup):
            guard log.wants(lookup.decisionMethod, on: ring) else { return }
            var outcome = DecisionRecord.Outcome.error(failed ?? .internal)
            if failed == nil, case .lookup(let page) = response.answer { outcome = .listing(items: page.itemCount) }
            let entry = DecisionRecord(
                method: lookup.decisionMethod, callId: request.callId, snapshotVersion: response.snapshotVersion,
                unixNanos: DecisionLog.unixNanos(), latencyNanos: latencyNanos, pid: peer.pid, uid: peer.uid,
                batchIndex: nil, outcome: outcome)
            switch lookup {
            case .projects(let query):
                Self.withIds(query.user, nil, nil) { log.record(entry, ids: $0, on: ring) }
            case .projectAccess(let query):
                Self.withIds(query.project, nil, nil) { log.record(entry, ids: $0, on: ring) }
            case .assets(let query):
                Self.withIds(query.user, query.project, nil) { log.record(entry, ids: $0, on: ring) }
            }
        case .status, .reload:
            return
        }
    }

    private func record(
        _ check: WireRequest.Check, _ outcome: DecisionRecord.Outcome, _ request: WireRequest, _ response: WireResponse,
        _ peer: (pid: Int32, uid: UInt32), _ latencyNanos: Int64, batchIndex: Int?
    ) {
        let entry = DecisionRecord(
            method: check.decisionMethod, callId: request.callId, snapshotVersion: response.snapshotVersion,
            unixNanos: DecisionLog.unixNanos(), latencyNanos: latencyNanos, pid: peer.pid, uid: peer.uid,
            batchIndex: batchIndex, outcome: outcome)
        switch check {
        case .effectivePermission(let query):
            Self.withIds(query.user, query.project, nil) { log.record(entry, ids: $0, on: ring) }
        case .canUse(let query):
            Self.withIds(query.user, query.asset, query.project) { log.record(entry, ids: $0, on: ring) }
        case .seatType(let user), .capabilities(let user):
            Self.withIds(user, nil, nil) { log.record(entry, ids: $0, on: ring) }
        }
    }

    /// A check answered by the fast path: its ids are still the request's bytes.
    @inline(__always)
    func record(
        _ check: FastCheck, _ answer: FastAnswer, snapshotVersion: UInt64, peer: (pid: Int32, uid: UInt32),
        latencyNanos: Int64, unixNanos: Int64
    ) {
        let method: DecisionMethod
        let outcome: DecisionRecord.Outcome
        let ids: (UnsafeRawBufferPointer?, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?)
        switch (check.kind, answer) {
        case (.effectivePermission(let user, let project, let required), .permission(let decision, let allowed)):
            method = .effectivePermission
            outcome = .level(decision.level, decision.reason, allowed: required == nil ? nil : allowed)
            ids = (user, project, nil)
        case (.canUse(let user, let asset, let project, let required), .access(let decision, let allowed)):
            method = .canUse
            outcome = .access(decision.access, decision.reason, allowed: required == nil ? nil : allowed)
            ids = (user, asset, project)
        case (.seatType(let user), .seat(let decision)):
            method = .seatType
            outcome = .seat(decision.seat, paid: decision.paid, role: decision.role)
            ids = (user, nil, nil)
        default:
            return
        }
        guard log.wants(method, on: ring) else { return }
        log.record(
            DecisionRecord(
                method: method, callId: check.callId, snapshotVersion: snapshotVersion, unixNanos: unixNanos,
                latencyNanos: latencyNanos, pid: peer.pid, uid: peer.uid, batchIndex: nil, outcome: outcome),
            ids: ids, on: ring)
    }

    /// Runs `body` with the UTF-8 bytes of up to three ids (nil: absent).
    private static func withIds(
        _ a: String, _ b: String?, _ c: String?,
        _ body: ((UnsafeRawBufferPointer?, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?)) -> Void
    ) {
        var a = a, b = b ?? "", c = c ?? ""
        let hasB = b.isEmpty ? false : true, hasC = c.isEmpty ? false : true
        a.withUTF8 { pa in
            b.withUTF8 { pb in
                c.withUTF8 { pc in
                    body((UnsafeRawBufferPointer(pa), hasB ? UnsafeRawBufferPointer(pb) : nil, hasC ? UnsafeRawBufferPointer(pc) : nil))
                }
            }
        }
    }
}

extension Duration {
    /// The duration in nanoseconds; 0 for a negative one.
    var wholeNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return max(0, seconds &* 1_000_000_000 &+ attoseconds / 1_000_000_000)
    }
}

extension WireRequest.Check {
    var decisionMethod: DecisionMethod {
        switch self {
        case .canUse: .canUse
        case .effectivePermission: .effectivePermission
        case .seatType: .seatType
        case .capabilities: .capabilities
        }
    }
}

extension WireRequest.Lookup {
    var decisionMethod: DecisionMethod {
        switch self {
        case .projects: .listProjects
        case .projectAccess: .listProjectAccess
        case .assets: .listAssets
        }
    }
}

extension WireResponse.LookupResult {
    var itemCount: Int {
        switch self {
        case .projects(let page), .projectAccess(let page): page.count
        case .assets(let page): page.count
        }
    }
}

extension WireResponse.CheckResult {
    /// The outcome of this result for `check` (`allowed` only when the check asked).
    func outcome(for check: WireRequest.Check) -> DecisionRecord.Outcome {
        switch (self, check) {
        case (.effectivePermission(let result), .effectivePermission(let query)):
            .level(result.level, result.reason, allowed: query.requiredLevel == nil ? nil : result.allowed)
        case (.canUse(let result), .canUse(let query)):
            .access(result.access, result.reason, allowed: query.requiredAccess == nil ? nil : result.allowed)
        case (.seatType(let result), _):
            .seat(result.seat, paid: result.paid, role: result.role)
        case (.capabilities(let capabilities), _):
            .capabilities(count: capabilities.count)
        default:
            .error(.internal)
        }
    }
}

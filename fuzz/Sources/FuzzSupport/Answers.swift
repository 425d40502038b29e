// The server's answers to decoded requests, for the fuzz targets to compare paths with.
//
// These mirror `RequestProcessor.evaluate`, `RequestProcessor.answer(_:keys:in:)` and
// `FastKeys` in Sources/AuthzServer/RequestProcessor.swift, which live in the server module
// (not a library of the package, and built with NIO). They are a dozen lines of mapping
// from engine decisions to wire results; Tests/AuthzServerTests/FastPathTests.swift checks
// the server's own copies the same way. When that code moves to a NIO-free module (the
// connection core), use it from there instead.

public import AuthzEngine
public import AuthzWire

public enum Answers {
    /// The general path's response to a decoded payload: the answer to a check or a batch
    /// from `snapshot`, or the error answer. Nil for Status and Reload (not answered from a
    /// snapshot) and for the lookups (which the fast path never takes).
    public static func general(
        _ decoded: Result<WireRequest, WireRequestError>, from snapshot: Snapshot
    ) -> WireResponse? {
        switch decoded {
        case .failure(let error):
            return WireResponse(replyingTo: error)
        case .success(let request):
            switch request.method {
            case .check(let check):
                return WireResponse(
                    callId: request.callId, snapshotVersion: snapshot.version,
                    answer: .check(evaluate(check, explain: request.explain, in: snapshot)))
            case .batch(let checks):
                return WireResponse(
                    callId: request.callId, snapshotVersion: snapshot.version,
                    answer: .batch(checks.map { evaluate($0, explain: request.explain, in: snapshot) }))
            case .status, .reload, .lookup:
                return nil
            }
        }
    }

    /// One decision from `snapshot` (`RequestProcessor.evaluate`).
    public static func evaluate(
        _ check: WireRequest.Check, explain: Bool, in snapshot: Snapshot
    ) -> WireResponse.CheckResult {
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

    /// A fast-path check's decision, looked up from its id bytes (`FastKeys` and
    /// `RequestProcessor.answer(_:keys:in:)`).
    public static func fast(_ check: FastCheck, in snapshot: Snapshot) -> FastAnswer {
        switch check.kind {
        case .effectivePermission(let user, let project, let required):
            let decision = snapshot.effectivePermission(snapshot.userKey(utf8: user), snapshot.projectKey(utf8: project))
            return .permission(decision, allowed: required.map { decision.level >= $0 } ?? false)
        case .canUse(let user, let asset, let project, let required):
            let decision = snapshot.canUse(
                snapshot.userKey(utf8: user), snapshot.assetKey(utf8: asset),
                project: project.map { snapshot.projectKey(utf8: $0) })
            return .access(decision, allowed: required.map { decision.access >= $0 } ?? false)
        case .seatType(let user):
            return .seat(snapshot.seatType(snapshot.userKey(utf8: user)))
        }
    }

    /// The fast path's framed answer (`FastPathEncoder`).
    public static func fastFrame(_ check: FastCheck, in snapshot: Snapshot) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: FastPathEncoder.maxFrameLength)
        let count = out.withUnsafeMutableBytes {
            FastPathEncoder.encode(
                callId: check.callId, snapshotVersion: snapshot.version, answer: fast(check, in: snapshot),
                into: $0.baseAddress!)
        }
        Fuzz.require(count <= FastPathEncoder.maxFrameLength, "the fast path wrote \(count) bytes")
        return Array(out[..<count])
    }

    /// The request a fast-path check stands for, as the general decoder would return it.
    public static func request(_ check: FastCheck) -> WireRequest {
        func text(_ bytes: UnsafeRawBufferPointer) -> String { String(decoding: bytes, as: UTF8.self) }
        let method: WireRequest.Check =
            switch check.kind {
            case .effectivePermission(let user, let project, let required):
                .effectivePermission(.init(user: text(user), project: text(project), requiredLevel: required))
            case .canUse(let user, let asset, let project, let required):
                .canUse(.init(user: text(user), asset: text(asset), project: project.map(text), requiredAccess: required))
            case .seatType(let user):
                .seatType(user: text(user))
            }
        return WireRequest(
            callId: check.callId, minSnapshotVersion: check.minSnapshotVersion, deadlineMs: check.deadlineMs, method: .check(method))
    }
}

extension FrameEncodable {
    /// The encoded frame.
    public var frameBytes: [UInt8] {
        var bytes: [UInt8] = []
        append(to: &bytes)
        return bytes
    }
}

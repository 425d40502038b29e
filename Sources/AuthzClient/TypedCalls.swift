// Typed helpers over `call(_:)`: one per method, each returning its result with the
// snapshot version that answered it, and throwing `AuthzClientError` for a non-OK status.

public import AuthzEngine
public import AuthzQuery
public import AuthzWire

/// A result and the snapshot version it was computed from.
public struct Reply<Value: Sendable>: Sendable {
    public var result: Value
    public var snapshotVersion: UInt64

    public init(result: Value, snapshotVersion: UInt64) {
        self.result = result
        self.snapshotVersion = snapshotVersion
    }
}

extension Reply: Equatable where Value: Equatable {}

extension SidecarClient {
    /// `EffectivePermission(user, project)`; an empty `user` is the anonymous web viewer.
    /// With `requiredLevel`, `result.allowed` says whether the level reaches it.
    public func effectivePermission(
        user: String, project: String, requiredLevel: Level? = nil, explain: Bool = false,
        minSnapshotVersion: UInt64 = 0
    ) async throws(AuthzClientError) -> Reply<WireResponse.EffectivePermissionResult> {
        let query = WireRequest.Check.effectivePermission(.init(user: user, project: project, requiredLevel: requiredLevel))
        let reply = try await check(query, explain: explain, minSnapshotVersion: minSnapshotVersion)
        guard case .effectivePermission(let result) = reply.result else { throw Self.mismatch("effective_permission") }
        return Reply(result: result, snapshotVersion: reply.snapshotVersion)
    }

    /// `CanUse(user, asset, project?)`. With `requiredAccess`, `result.allowed` says whether
    /// the access reaches it.
    public func canUse(
        user: String, asset: String, project: String? = nil, requiredAccess: Access? = nil,
        minSnapshotVersion: UInt64 = 0
    ) async throws(AuthzClientError) -> Reply<WireResponse.CanUseResult> {
        let query = WireRequest.Check.canUse(
            .init(user: user, asset: asset, project: project, requiredAccess: requiredAccess))
        let reply = try await check(query, minSnapshotVersion: minSnapshotVersion)
        guard case .canUse(let result) = reply.result else { throw Self.mismatch("can_use") }
        return Reply(result: result, snapshotVersion: reply.snapshotVersion)
    }

    /// `SeatType(user)`.
    public func seatType(
        user: String, minSnapshotVersion: UInt64 = 0
    ) async throws(AuthzClientError) -> Reply<WireResponse.SeatTypeResult> {
        let reply = try await check(.seatType(user: user), minSnapshotVersion: minSnapshotVersion)
        guard case .seatType(let result) = reply.result else { throw Self.mismatch("seat_type") }
        return Reply(result: result, snapshotVersion: reply.snapshotVersion)
    }

    /// The capabilities of the user's resolved role, in `Capability` order.
    public func capabilities(
        user: String, minSnapshotVersion: UInt64 = 0
    ) async throws(AuthzClientError) -> Reply<[Capability]> {
        let reply = try await check(.capabilities(user: user), minSnapshotVersion: minSnapshotVersion)
        guard case .capabilities(let result) = reply.result else { throw Self.mismatch("capabilities") }
        return Reply(result: result, snapshotVersion: reply.snapshotVersion)
    }

    /// Any one check.
    public func check(
        _ check: WireRequest.Check, explain: Bool = false, minSnapshotVersion: UInt64 = 0
    ) async throws(AuthzClientError) -> Reply<WireResponse.CheckResult> {
        let response = try await call(
            WireRequest(callId: 0, minSnapshotVersion: minSnapshotVersion, explain: explain, method: .check(check)))
        guard case .check(let result) = try Self.answer(of: response) else { throw Self.mismatch("a check") }
        return Reply(result: result, snapshotVersion: response.snapshotVersion)
    }

    /// Several checks answered in order from one snapshot.
    public func batch(
        _ checks: [WireRequest.Check], explain: Bool = false, minSnapshotVersion: UInt64 = 0
    ) async throws(AuthzClientError) -> Reply<[WireResponse.CheckResult]> {
        let response = try await call(
            WireRequest(callId: 0, minSnapshotVersion: minSnapshotVersion, explain: explain, method: .batch(checks)))
        guard case .batch(let results) = try Self.answer(of: response) else { throw Self.mismatch("batch") }
        guard results.count == checks.count else {
            throw AuthzClientError(
                code: .internal, message: "the server answered \(results.count) of \(checks.count) batch checks")
        }
        return Reply(result: results, snapshotVersion: response.snapshotVersion)
    }

    /// One page of `ListProjects(user, minLevel)` (RULES.md §8): the projects `user` (empty:
    /// the anonymous web viewer) can open. Pass the previous page's `nextPageToken` to go on;
    /// the listing is complete when a page's `nextPageToken` is empty.
    public func listProjects(
        user: String, minLevel: Level? = nil, pageSize: UInt32 = 0, pageToken: String = "",
        minSnapshotVersion: UInt64 = 0
    ) async throws(AuthzClientError) -> Reply<WireResponse.Listing<WireResponse.LevelItem>> {
        let reply = try await lookup(
            .projects(.init(user: user, minLevel: minLevel, pageSize: pageSize, pageToken: pageToken)),
            minSnapshotVersion: minSnapshotVersion)
        guard case .projects(let listing) = reply.result else { throw Self.mismatch("list_projects") }
        return Reply(result: listing, snapshotVersion: reply.snapshotVersion)
    }

    /// One page of `ListProjectAccess(project, minLevel)`: the users who can open `project`.
    public func listProjectAccess(
        project: String, minLevel: Level? = nil, pageSize: UInt32 = 0, pageToken: String = "",
        minSnapshotVersion: UInt64 = 0
    ) async throws(AuthzClientError) -> Reply<WireResponse.Listing<WireResponse.LevelItem>> {
        let reply = try await lookup(
            .projectAccess(.init(project: project, minLevel: minLevel, pageSize: pageSize, pageToken: pageToken)),
            minSnapshotVersion: minSnapshotVersion)
        guard case .projectAccess(let listing) = reply.result else { throw Self.mismatch("list_project_access") }
        return Reply(result: listing, snapshotVersion: reply.snapshotVersion)
    }

    /// One page of `ListAssets(user, project?, minAccess)`: the assets `user` can use.
    public func listAssets(
        user: String, project: String? = nil, minAccess: Access? = nil, pageSize: UInt32 = 0, pageToken: String = "",
        minSnapshotVersion: UInt64 = 0
    ) async throws(AuthzClientError) -> Reply<WireResponse.Listing<WireResponse.AccessItem>> {
        let reply = try await lookup(
            .assets(.init(user: user, project: project, minAccess: minAccess, pageSize: pageSize, pageToken: pageToken)),
            minSnapshotVersion: minSnapshotVersion)
        guard case .assets(let listing) = reply.result else { throw Self.mismatch("list_assets") }
        return Reply(result: listing, snapshotVersion: reply.snapshotVersion)
    }

    /// Any one lookup page.
    public func lookup(
        _ lookup: WireRequest.Lookup, minSnapshotVersion: UInt64 = 0
    ) async throws(AuthzClientError) -> Reply<WireResponse.LookupResult> {
        let response = try await call(
            WireRequest(callId: 0, minSnapshotVersion: minSnapshotVersion, method: .lookup(lookup)))
        guard case .lookup(let result) = try Self.answer(of: response) else { throw Self.mismatch("a lookup") }
        return Reply(result: result, snapshotVersion: response.snapshotVersion)
    }

    /// One page of an `authzctl check` lookup over the socket, as the same `ListingPage` the
    /// local engine gives (`LookupQuery.page(_:token:)`); a failure carries the line
    /// `authzctl` prints (`CODE: message`).
    public func page(_ query: LookupQuery, token: String, minSnapshotVersion: UInt64 = 0) async -> Result<ListingPage, LookupFailure> {
        do {
            let reply = try await lookup(WireRequest.Lookup(query: query, pageToken: token), minSnapshotVersion: minSnapshotVersion)
            return .success(ListingPage(wire: reply.result, snapshotVersion: reply.snapshotVersion))
        } catch {
            return .failure(LookupFailure("\(error.code.name): \(error.message)"))
        }
    }

    /// The server's health and snapshot counters.
    public func status() async throws(AuthzClientError) -> WireResponse.StatusResult {
        let response = try await call(WireRequest(callId: 0, method: .status))
        guard case .status(let result) = try Self.answer(of: response) else { throw Self.mismatch("status") }
        return result
    }

    /// Asks the server to reload its snapshot now; returns the version in service after.
    public func reload() async throws(AuthzClientError) -> UInt64 {
        let response = try await call(WireRequest(callId: 0, method: .reload))
        guard case .reload(let result) = try Self.answer(of: response) else { throw Self.mismatch("reload") }
        return result.snapshotVersion
    }

    /// Answers an `authzctl check` query over the socket, with the explanation steps, as
    /// the same `Answer` the local engine gives (`Answer(query, snapshot:)`).
    public func answer(_ query: Query, minSnapshotVersion: UInt64 = 0) async throws(AuthzClientError) -> Answer {
        let response = try await call(WireRequest(query: query, minSnapshotVersion: minSnapshotVersion))
        return try Answer(wire: response)
    }

    static func answer(of response: WireResponse) throws(AuthzClientError) -> WireResponse.Answer {
        guard response.status.code == .ok else { throw AuthzClientError(status: response.status) }
        guard let answer = response.answer else {
            throw AuthzClientError(code: .internal, message: "the server's OK response carries no result")
        }
        return answer
    }

    static func mismatch(_ expected: String) -> AuthzClientError {
        AuthzClientError(code: .internal, message: "the server answered with a result for another method than \(expected)")
    }
}

// Between the JSON query/answer language of `authzctl check` and the conformance files
// (AuthzQuery) and the wire protocol (AuthzWire), so a socket answer prints exactly as
// the local engine's does.

import AuthzEngine
public import AuthzQuery
public import AuthzWire

extension WireRequest.Check {
    /// The wire check asking `query`. A `can_use` project of "" is sent as no project: the
    /// wire cannot tell them apart.
    public init(query: Query) {
        switch query {
        case .effectivePermission(let user, let project):
            self = .effectivePermission(.init(user: user, project: project))
        case .canUse(let user, let asset, let project):
            self = .canUse(.init(user: user, asset: asset, project: project?.isEmpty == true ? nil : project))
        case .seatType(let user):
            self = .seatType(user: user)
        case .capabilities(let user):
            self = .capabilities(user: user)
        }
    }
}

extension WireRequest {
    /// The request asking `query`, with the explanation steps by default (as the local
    /// `Answer(query, snapshot:)` has them).
    public init(query: Query, callId: UInt64 = 0, explain: Bool = true, minSnapshotVersion: UInt64 = 0) {
        self.init(
            callId: callId, minSnapshotVersion: minSnapshotVersion, explain: explain,
            method: .check(WireRequest.Check(query: query)))
    }
}

extension Answer {
    /// The answer a single-check response carries. Throws the response's status when it
    /// is not OK, and `internal` when it carries no single-check result.
    public init(wire response: WireResponse) throws(AuthzClientError) {
        guard response.status.code == .ok else { throw AuthzClientError(status: response.status) }
        guard case .check(let result) = response.answer else {
            throw AuthzClientError(code: .internal, message: "the response carries no single-check result")
        }
        self.init(wire: result, snapshotVersion: response.snapshotVersion)
    }

    /// The answer one check result stands for (e.g. an element of a batch result).
    public init(wire result: WireResponse.CheckResult, snapshotVersion: UInt64) {
        let converted: Answer.Result
        switch result {
        case .effectivePermission(let permission):
            converted = .permission(
                level: permission.level, reason: permission.reason,
                steps: permission.steps.map {
                    ExplanationStep(reason: $0.reason, level: $0.level, subject: $0.subject.isEmpty ? nil : $0.subject)
                })
        case .canUse(let access):
            converted = .access(AccessDecision(access.access, access.reason))
        case .seatType(let seat):
            converted = .seat(
                SeatDecision(
                    seat: seat.seat, paid: seat.paid, role: seat.role, roleSource: seat.roleSource,
                    planDowngrade: seat.planDowngrade))
        case .capabilities(let capabilities):
            converted = .capabilities(capabilities)
        }
        self.init(converted, snapshotVersion: snapshotVersion)
    }
}

extension WireRequest.Lookup {
    /// The wire lookup asking `query` from `pageToken`.
    public init(query: LookupQuery, pageToken: String) {
        let pageSize = UInt32(clamping: query.requestedPageSize)
        switch query.subject {
        case .projects(let user):
            self = .projects(.init(user: user, minLevel: query.minLevel, pageSize: pageSize, pageToken: pageToken))
        case .projectAccess(let project):
            self = .projectAccess(.init(project: project, minLevel: query.minLevel, pageSize: pageSize, pageToken: pageToken))
        case .assets(let user, let project):
            self = .assets(
                .init(user: user, project: project, minAccess: query.minAccess, pageSize: pageSize, pageToken: pageToken))
        }
    }
}

extension ListingPage {
    /// The page a lookup result stands for.
    public init(wire result: WireResponse.LookupResult, snapshotVersion: UInt64) {
        switch result {
        case .projects(let listing), .projectAccess(let listing):
            self.init(
                listing, snapshotVersion: snapshotVersion,
                items: listing.items.map { Item(id: $0.id, value: .level($0.level), reason: $0.reason) })
        case .assets(let listing):
            self.init(
                listing, snapshotVersion: snapshotVersion,
                items: listing.items.map { Item(id: $0.id, value: .access($0.access), reason: $0.reason) })
        }
    }

    private init<Wire>(_ listing: WireResponse.Listing<Wire>, snapshotVersion: UInt64, items: [Item]) {
        self.init(
            items: items, nextPageToken: listing.nextPageToken, snapshotVersion: snapshotVersion,
            snapshotChanged: listing.snapshotChanged, pageSizeClamped: listing.pageSizeClamped, reason: listing.reason)
    }
}

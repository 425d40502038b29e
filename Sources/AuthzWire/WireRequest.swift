// The Swift form of an `authz.v1.Request` (proto/authz/v1/authz.proto).

public import AuthzEngine

/// A decoded request: what the server answers, or what a client sends.
///
/// A value decoded by `init(decoding:maxBatchChecks:)` is valid: every id satisfies
/// `Identifier.isValid` (or is an allowed empty id), every enum is known and a batch is
/// within its limit. A batch holds checks only, so batches cannot nest.
public struct WireRequest: Sendable, Hashable {
    /// The default limit on the checks of one batch.
    public static let defaultMaxBatchChecks = 256

    /// Chosen by the client and echoed in the response.
    public var callId: UInt64
    /// Answer from a snapshot at least this new; 0 = any snapshot.
    public var minSnapshotVersion: UInt64
    /// The time budget in milliseconds; 0 = the server's default.
    public var deadlineMs: UInt32
    /// Include the explanation steps in EffectivePermission results.
    public var explain: Bool
    public var method: Method

    public init(
        callId: UInt64,
        minSnapshotVersion: UInt64 = 0,
        deadlineMs: UInt32 = 0,
        explain: Bool = false,
        method: Method
    ) {
        self.callId = callId
        self.minSnapshotVersion = minSnapshotVersion
        self.deadlineMs = deadlineMs
        self.explain = explain
        self.method = method
    }

    /// The `oneof method` of a request.
    public enum Method: Sendable, Hashable {
        /// One of the four decisions (`can_use`, `effective_permission`, `seat_type`,
        /// `capabilities` on the wire).
        case check(Check)
        /// Several decisions answered in order from one snapshot.
        case batch([Check])
        /// The server's health and snapshot counters.
        case status
        /// Reload the snapshot now.
        case reload
        /// One page of a listing (RULES.md §8).
        case lookup(Lookup)
    }

    /// A lookup: one page of ListProjects, ListProjectAccess or ListAssets.
    public enum Lookup: Sendable, Hashable {
        case projects(ListProjects)
        case projectAccess(ListProjectAccess)
        case assets(ListAssets)
    }

    /// `ListProjects(user, min_level)`: the projects `user` can open.
    public struct ListProjects: Sendable, Hashable {
        /// Empty: the anonymous web viewer.
        public var user: String
        /// nil: `can_view_app` (UNSPECIFIED on the wire).
        public var minLevel: Level?
        /// 0: the server's default.
        public var pageSize: UInt32
        /// Empty: the first page.
        public var pageToken: String

        public init(user: String, minLevel: Level? = nil, pageSize: UInt32 = 0, pageToken: String = "") {
            self.user = user
            self.minLevel = minLevel
            self.pageSize = pageSize
            self.pageToken = pageToken
        }
    }

    /// `ListProjectAccess(project, min_level)`: the users who can open `project`.
    public struct ListProjectAccess: Sendable, Hashable {
        public var project: String
        /// nil: `can_view_app` (UNSPECIFIED on the wire).
        public var minLevel: Level?
        public var pageSize: UInt32
        public var pageToken: String

        public init(project: String, minLevel: Level? = nil, pageSize: UInt32 = 0, pageToken: String = "") {
            self.project = project
            self.minLevel = minLevel
            self.pageSize = pageSize
            self.pageToken = pageToken
        }
    }

    /// `ListAssets(user, project?, min_access)`: the assets `user` can use (in `project`).
    public struct ListAssets: Sendable, Hashable {
        /// Empty: the anonymous web viewer.
        public var user: String
        /// nil: not in a project (empty on the wire).
        public var project: String?
        /// nil: `view` (UNSPECIFIED on the wire).
        public var minAccess: Access?
        public var pageSize: UInt32
        public var pageToken: String

        public init(user: String, project: String? = nil, minAccess: Access? = nil, pageSize: UInt32 = 0, pageToken: String = "") {
            self.user = user
            self.project = project
            self.minAccess = minAccess
            self.pageSize = pageSize
            self.pageToken = pageToken
        }
    }

    /// One decision: a request method on its own, or an element of a batch.
    public enum Check: Sendable, Hashable {
        case canUse(CanUse)
        case effectivePermission(EffectivePermission)
        /// `user` may be empty: the anonymous web viewer.
        case seatType(user: String)
        /// `user` may be empty: the anonymous web viewer.
        case capabilities(user: String)
    }

    /// `CanUse(user, asset, project?)` (RULES.md §5).
    public struct CanUse: Sendable, Hashable {
        /// Empty: the anonymous web viewer.
        public var user: String
        public var asset: String
        /// nil: not in a project (empty on the wire).
        public var project: String?
        /// When set, the answer's `allowed` says whether the access reaches it.
        public var requiredAccess: Access?

        public init(user: String, asset: String, project: String? = nil, requiredAccess: Access? = nil) {
            self.user = user
            self.asset = asset
            self.project = project
            self.requiredAccess = requiredAccess
        }

        /// The result's `allowed` for an answer of `access`: `access >= requiredAccess`,
        /// false when no access was required.
        public func allowed(_ access: Access) -> Bool {
            requiredAccess.map { access >= $0 } ?? false
        }
    }

    /// `EffectivePermission(user, project)` (RULES.md §4).
    public struct EffectivePermission: Sendable, Hashable {
        /// Empty: the anonymous web viewer.
        public var user: String
        public var project: String
        /// When set, the answer's `allowed` says whether the level reaches it.
        public var requiredLevel: Level?

        public init(user: String, project: String, requiredLevel: Level? = nil) {
            self.user = user
            self.project = project
            self.requiredLevel = requiredLevel
        }

        /// The result's `allowed` for an answer of `level`: `level >= requiredLevel`,
        /// false when no level was required.
        public func allowed(_ level: Level) -> Bool {
            requiredLevel.map { level >= $0 } ?? false
        }
    }
}

extension WireRequest.Lookup {
    /// The request field holding the lookup (`list_projects`, …), for error messages.
    public var fieldPrefix: String {
        switch self {
        case .projects: "list_projects"
        case .projectAccess: "list_project_access"
        case .assets: "list_assets"
        }
    }
}

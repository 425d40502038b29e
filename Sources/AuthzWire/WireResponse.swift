// The Swift form of an `authz.v1.Response` (proto/authz/v1/authz.proto).

public import AuthzEngine

/// The outcome of a call on the wire: a status code and a message.
public struct WireStatus: Sendable, Hashable {
    public var code: RPCCode
    public var message: String

    public init(code: RPCCode, message: String = "") {
        self.code = code
        self.message = message
    }

    public static let ok = WireStatus(code: .ok)
}

/// A response: the answer to one request, or the error that prevented one.
public struct WireResponse: Sendable, Hashable {
    /// The request's `call_id`; 0 when the request's could not be read.
    public var callId: UInt64
    public var status: WireStatus
    /// The snapshot the answer was computed from; 0 when none was used.
    public var snapshotVersion: UInt64
    /// Set, matching the request's method, exactly when `status.code` is `ok`.
    public var answer: Answer?

    public init(callId: UInt64, status: WireStatus, snapshotVersion: UInt64, answer: Answer?) {
        self.callId = callId
        self.status = status
        self.snapshotVersion = snapshotVersion
        self.answer = answer
    }

    /// A successful answer.
    public init(callId: UInt64, snapshotVersion: UInt64, answer: Answer) {
        self.init(callId: callId, status: .ok, snapshotVersion: snapshotVersion, answer: answer)
    }

    /// An error response; `error.cause` is not sent.
    public init(callId: UInt64, error: WireError, snapshotVersion: UInt64 = 0) {
        self.init(
            callId: callId, status: WireStatus(code: error.code, message: error.message),
            snapshotVersion: snapshotVersion, answer: nil)
    }

    /// The error response to a request that could not be decoded (call id 0 when unknown).
    public init(replyingTo failure: WireRequestError) {
        self.init(callId: failure.callId ?? 0, error: failure.error)
    }

    /// The `oneof result` of a response, one case per request method.
    public enum Answer: Sendable, Hashable {
        case check(CheckResult)
        /// One result per check, in request order.
        case batch([CheckResult])
        case status(StatusResult)
        case reload(ReloadResult)
        /// One page of a listing.
        case lookup(LookupResult)
    }

    /// The answer to one `WireRequest.Lookup`.
    public enum LookupResult: Sendable, Hashable {
        case projects(Listing<LevelItem>)
        case projectAccess(Listing<LevelItem>)
        case assets(Listing<AccessItem>)
    }

    /// One page of a listing (`LevelListing` / `AccessListing` on the wire).
    ///
    /// A server builds it straight from the engine's page (`init(page:ids:)`): the items stay
    /// the engine's entries and their ids stay in the snapshot's id arena until the response
    /// is encoded, which writes them from there; `items` spells them out when read.
    public struct Listing<Item: ListingItem>: Sendable, Hashable {
        enum Storage: Sendable {
            case values([Item])
            case snapshot(entries: [Item.Entry], ids: IdIndex)
        }

        var storage: Storage

        /// In id order.
        public var items: [Item] {
            get {
                switch storage {
                case .values(let items): items
                case .snapshot(let entries, let ids): entries.map { Item(id: ids.id(at: $0.index), entry: $0) }
                }
            }
            set { storage = .values(newValue) }
        }

        /// The number of items (without spelling them out).
        public var count: Int {
            switch storage {
            case .values(let items): items.count
            case .snapshot(let entries, _): entries.count
            }
        }

        /// Empty when the listing is complete.
        public var nextPageToken: String
        /// The request's token came from another snapshot version.
        public var snapshotChanged: Bool
        /// The page size applied.
        public var pageSize: UInt32
        /// The requested page size was over the maximum and was clamped.
        public var pageSizeClamped: Bool
        /// Why the listing is empty whatever the pages (unknown or inactive user, unknown
        /// project); nil otherwise (UNSPECIFIED on the wire).
        public var reason: Reason?

        public init(
            items: [Item], nextPageToken: String = "", snapshotChanged: Bool = false, pageSize: UInt32,
            pageSizeClamped: Bool = false, reason: Reason? = nil
        ) {
            self.storage = .values(items)
            self.nextPageToken = nextPageToken
            self.snapshotChanged = snapshotChanged
            self.pageSize = pageSize
            self.pageSizeClamped = pageSizeClamped
            self.reason = reason
        }

        /// The engine's page, its entries' ids read from `ids` (the snapshot's index of the
        /// listed kind) only when encoded or read.
        public init(page: LookupPage<Item.Entry>, ids: IdIndex) {
            self.storage = .snapshot(entries: page.entries, ids: ids)
            self.nextPageToken = page.nextPageToken
            self.snapshotChanged = page.snapshotChanged
            self.pageSize = UInt32(clamping: page.pageSize)
            self.pageSizeClamped = page.pageSizeClamped
            self.reason = page.reason
        }

        public static func == (lhs: Self, rhs: Self) -> Bool {
            lhs.items == rhs.items && lhs.nextPageToken == rhs.nextPageToken
                && lhs.snapshotChanged == rhs.snapshotChanged && lhs.pageSize == rhs.pageSize
                && lhs.pageSizeClamped == rhs.pageSizeClamped && lhs.reason == rhs.reason
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(items)
            hasher.combine(nextPageToken)
            hasher.combine(snapshotChanged)
            hasher.combine(pageSize)
            hasher.combine(pageSizeClamped)
            hasher.combine(reason)
        }
    }

    /// A listed project or user and its EffectivePermission.
    public struct LevelItem: ListingItem {
        public var id: String
        public var level: Level
        public var reason: Reason

        public init(id: String, level: Level, reason: Reason) {
            self.id = id
            self.level = level
            self.reason = reason
        }

        public init(id: String, entry: LevelEntry) {
            self.init(id: id, level: entry.level, reason: entry.reason)
        }
    }

    /// A listed asset and its CanUse access.
    public struct AccessItem: ListingItem {
        public var id: String
        public var access: Access
        public var reason: Reason

        public init(id: String, access: Access, reason: Reason) {
            self.id = id
            self.access = access
            self.reason = reason
        }

        public init(id: String, entry: AccessEntry) {
            self.init(id: id, access: entry.access, reason: entry.reason)
        }
    }

    /// The answer to one `WireRequest.Check`.
    public enum CheckResult: Sendable, Hashable {
        case canUse(CanUseResult)
        case effectivePermission(EffectivePermissionResult)
        case seatType(SeatTypeResult)
        /// In `Capability` order; empty for an unknown or inactive user.
        case capabilities([Capability])
    }

    public struct CanUseResult: Sendable, Hashable {
        public var access: Access
        public var reason: Reason
        /// `WireRequest.CanUse.allowed(access)`.
        public var allowed: Bool

        public init(access: Access, reason: Reason, allowed: Bool = false) {
            self.access = access
            self.reason = reason
            self.allowed = allowed
        }
    }

    /// One step of an EffectivePermission explanation.
    public struct Step: Sendable, Hashable {
        public var reason: Reason
        /// The level after the step.
        public var level: Level
        /// The group id or asset id the step names; empty when it names none.
        public var subject: String

        public init(reason: Reason, level: Level, subject: String = "") {
            self.reason = reason
            self.level = level
            self.subject = subject
        }
    }

    public struct EffectivePermissionResult: Sendable, Hashable {
        public var level: Level
        public var reason: Reason
        /// Every step that applied, in order; empty unless the request set `explain`.
        public var steps: [Step]
        /// `WireRequest.EffectivePermission.allowed(level)`.
        public var allowed: Bool

        public init(level: Level, reason: Reason, steps: [Step] = [], allowed: Bool = false) {
            self.level = level
            self.reason = reason
            self.steps = steps
            self.allowed = allowed
        }
    }

    public struct SeatTypeResult: Sendable, Hashable {
        public var seat: Seat
        public var paid: Bool
        /// The resolved role; nil when `seat` is `none`.
        public var role: Role?
        /// How the role was resolved; nil when `seat` is `none`.
        public var roleSource: RoleSource?
        /// RULES.md §2's plan rule turned a resolved `explorer` into `viewer`.
        public var planDowngrade: Bool

        public init(seat: Seat, paid: Bool, role: Role?, roleSource: RoleSource?, planDowngrade: Bool = false) {
            self.seat = seat
            self.paid = paid
            self.role = role
            self.roleSource = roleSource
            self.planDowngrade = planDowngrade
        }
    }

    public struct StatusResult: Sendable, Hashable {
        public var snapshotVersion: UInt64
        public var loadedAtUnixMs: UInt64
        public var users: UInt64
        public var groups: UInt64
        public var assets: UInt64
        public var projects: UInt64
        public var grants: UInt64
        /// Empty when the last load attempt succeeded.
        public var lastLoadError: String
        public var lastLoadAttemptUnixMs: UInt64
        public var staleForMs: UInt64
        public var uptimeMs: UInt64
        public var connectionsOpen: UInt64
        public var requestsServed: UInt64
        /// `full` or `delta`: how the snapshot in service was built; empty before a load.
        public var lastLoadMethod: String
        /// Whether the file watch covers the database now.
        public var watching: Bool

        public init(
            snapshotVersion: UInt64 = 0,
            loadedAtUnixMs: UInt64 = 0,
            users: UInt64 = 0,
            groups: UInt64 = 0,
            assets: UInt64 = 0,
            projects: UInt64 = 0,
            grants: UInt64 = 0,
            lastLoadError: String = "",
            lastLoadAttemptUnixMs: UInt64 = 0,
            staleForMs: UInt64 = 0,
            uptimeMs: UInt64 = 0,
            connectionsOpen: UInt64 = 0,
            requestsServed: UInt64 = 0,
            lastLoadMethod: String = "",
            watching: Bool = false
        ) {
            self.snapshotVersion = snapshotVersion
            self.loadedAtUnixMs = loadedAtUnixMs
            self.users = users
            self.groups = groups
            self.assets = assets
            self.projects = projects
            self.grants = grants
            self.lastLoadError = lastLoadError
            self.lastLoadAttemptUnixMs = lastLoadAttemptUnixMs
            self.staleForMs = staleForMs
            self.uptimeMs = uptimeMs
            self.connectionsOpen = connectionsOpen
            self.requestsServed = requestsServed
            self.lastLoadMethod = lastLoadMethod
            self.watching = watching
        }
    }

    public struct ReloadResult: Sendable, Hashable {
        /// The snapshot version in service after the reload.
        public var snapshotVersion: UInt64

        public init(snapshotVersion: UInt64) {
            self.snapshotVersion = snapshotVersion
        }
    }
}

/// An item of a listing: `WireResponse.LevelItem` or `WireResponse.AccessItem`, made from the
/// engine's entry of its kind.
public protocol ListingItem: Sendable, Hashable {
    associatedtype Entry: LookupEntry
    var id: String { get }
    var reason: Reason { get }
    init(id: String, entry: Entry)
}

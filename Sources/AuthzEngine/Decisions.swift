// Answer types and the keys decisions take. All are small values: a decision never
// allocates unless the caller asks for the explanation as strings.

/// A user as a decision sees it: a dense index, the anonymous web viewer, or unknown.
public struct UserKey: Sendable, Hashable {
    public let raw: Int32
    @inlinable init(raw: Int32) { self.raw = raw }
    // Computed and inlinable, not stored `static let`s: across modules a stored global is
    // reached through its one-time-initialisation accessor, a call around which the server's
    // fast path retained and released the snapshot for every SeatType check.
    /// The anonymous viewer of an app shared to the web (the empty user id).
    @inlinable public static var anonymous: UserKey { UserKey(raw: -1) }
    /// An id that is not in the snapshot.
    @inlinable public static var unknown: UserKey { UserKey(raw: -2) }
    @inlinable public var isKnownUser: Bool { raw >= 0 }
}

/// A project, asset or group as a decision sees it: a dense index, or unknown (-1).
public struct EntityKey: Sendable, Hashable {
    public let raw: Int32
    @inlinable init(raw: Int32) { self.raw = raw }
    // Computed and inlinable: see `UserKey.unknown`.
    @inlinable public static var unknown: EntityKey { EntityKey(raw: -1) }
    @inlinable public var isKnown: Bool { raw >= 0 }
}

/// One step of an effective-permission explanation, as indexes (no strings).
public struct TraceStep: Sendable, Equatable {
    public var reason: Reason
    /// The level after this step.
    public var level: Level
    /// The group (for `group_grant`) or asset (for `asset_downgrade`) the step names, or -1.
    public var subject: Int32

    @inlinable public init(reason: Reason, level: Level, subject: Int32 = -1) {
        self.reason = reason
        self.level = level
        self.subject = subject
    }
}

/// The ordered steps that applied, stored inline (at most five: a granting step, the admin
/// floor or a role cap, the exploration rule and the asset downgrade).
public struct Trace: Sendable, Equatable, RandomAccessCollection {
    public static let capacity = 5
    private var s0 = TraceStep(reason: .noGrant, level: .none)
    private var s1 = TraceStep(reason: .noGrant, level: .none)
    private var s2 = TraceStep(reason: .noGrant, level: .none)
    private var s3 = TraceStep(reason: .noGrant, level: .none)
    private var s4 = TraceStep(reason: .noGrant, level: .none)
    private var length: UInt8 = 0

    @inlinable public init() {}

    public var startIndex: Int { 0 }
    public var endIndex: Int { Int(length) }

    public subscript(position: Int) -> TraceStep {
        precondition(position >= 0 && position < Int(length), "trace index out of range")
        switch position {
        case 0: return s0
        case 1: return s1
        case 2: return s2
        case 3: return s3
        default: return s4
        }
    }

    @usableFromInline
    mutating func append(_ step: TraceStep) {
        switch length {
        case 0: s0 = step
        case 1: s1 = step
        case 2: s2 = step
        case 3: s3 = step
        case 4: s4 = step
        default: preconditionFailure("trace overflow")
        }
        length += 1
    }

    public static func == (lhs: Trace, rhs: Trace) -> Bool { lhs.elementsEqual(rhs) }
}

/// The answer to `EffectivePermission(user, project)` (RULES.md §4).
public struct PermissionDecision: Sendable, Equatable {
    public var level: Level
    /// The code of the last step that changed or set the level.
    public var reason: Reason
    /// Every step that applied, in order; `trace.last` always carries `reason`.
    public var trace: Trace

    @usableFromInline
    init(_ reason: Reason, _ level: Level) {
        self.level = level
        self.reason = reason
        self.trace = Trace()
        trace.append(TraceStep(reason: reason, level: level))
    }

    /// A decision whose last trace step set `level` and `reason` (the caller knows them).
    @inline(__always)
    init(level: Level, reason: Reason, trace: Trace) {
        self.level = level
        self.reason = reason
        self.trace = trace
    }

    @usableFromInline
    init(trace: Trace) {
        let last = trace[trace.count - 1]
        self.level = last.level
        self.reason = last.reason
        self.trace = trace
    }
}

/// One explanation step with its subject spelled out.
public struct ExplanationStep: Sendable, Equatable, CustomStringConvertible {
    public var reason: Reason
    public var level: Level
    /// The group or asset id the step names, or nil.
    public var subject: String?

    public init(reason: Reason, level: Level, subject: String? = nil) {
        self.reason = reason
        self.level = level
        self.subject = subject
    }

    public var description: String {
        subject.map { "\(reason.name)(\($0)) → \(level.name)" } ?? "\(reason.name) → \(level.name)"
    }
}

/// The answer to `CanUse(user, asset[, project])` (RULES.md §5).
public struct AccessDecision: Sendable, Equatable {
    public var access: Access
    public var reason: Reason

    @inlinable public init(_ access: Access, _ reason: Reason) {
        self.access = access
        self.reason = reason
    }
}

/// The answer to `SeatType(user)` (RULES.md §6).
public struct SeatDecision: Sendable, Equatable {
    public var seat: Seat
    public var paid: Bool
    /// The resolved role; nil for an unknown or inactive user.
    public var role: Role?
    public var roleSource: RoleSource?
    /// Whether a resolved `explorer` became `viewer` because the plan lacks the role.
    public var planDowngrade: Bool

    public static let none = SeatDecision(seat: .none, paid: false, role: nil, roleSource: nil, planDowngrade: false)

    public init(seat: Seat, paid: Bool, role: Role?, roleSource: RoleSource?, planDowngrade: Bool) {
        self.seat = seat
        self.paid = paid
        self.role = role
        self.roleSource = roleSource
        self.planDowngrade = planDowngrade
    }
}

/// A set of capabilities, in RULES.md §3 table order when iterated.
public struct CapabilitySet: Sendable, Hashable, Sequence {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let empty = CapabilitySet(rawValue: 0)

    /// Every capability `role` holds (a table lookup: no allocation).
    public init(role: Role) {
        self = Self.byRole[Int(role.rawValue)]
    }

    /// The capability set of each role, indexed by `Role.rawValue`.
    private static let byRole: [CapabilitySet] = Role.allCases.map { role in
        var bits: UInt16 = 0
        for capability in Capability.allCases where role.has(capability) {
            bits |= 1 << capability.rawValue
        }
        return CapabilitySet(rawValue: bits)
    }

    public func contains(_ capability: Capability) -> Bool { rawValue & (1 << capability.rawValue) != 0 }

    public var isEmpty: Bool { rawValue == 0 }

    public func makeIterator() -> some IteratorProtocol<Capability> {
        let bits = rawValue
        return Capability.allCases.lazy.filter { bits & (1 << $0.rawValue) != 0 }.makeIterator()
    }
}

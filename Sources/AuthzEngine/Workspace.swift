// The workspace model: the validated content of a workspace document
// (spec/WORKSPACE-FORMAT.md). It is what the store imports and exports and what a
// `Snapshot` is built from. Values are plain data; validation lives in AuthzDocument.

/// Everything the sidecar decides from.
public struct Workspace: Sendable, Equatable {
    public var settings: WorkspaceSettings
    public var users: [User]
    public var groups: [Group]
    public var assets: [Asset]
    public var projects: [Project]

    public init(
        settings: WorkspaceSettings,
        users: [User] = [],
        groups: [Group] = [],
        assets: [Asset] = [],
        projects: [Project] = []
    ) {
        self.settings = settings
        self.users = users
        self.groups = groups
        self.assets = assets
        self.projects = projects
    }
}

/// The `workspace` object of the document.
public struct WorkspaceSettings: Sendable, Equatable {
    public var plan: Plan
    /// Lower-case domains; a user's email domain must match one exactly.
    public var allowedDomains: [String]
    public var defaultDomainRole: Role
    public var viewerSeatsPaid: Bool
    public var directorySync: DirectorySync

    public init(
        plan: Plan,
        allowedDomains: [String] = [],
        defaultDomainRole: Role = .viewer,
        viewerSeatsPaid: Bool = false,
        directorySync: DirectorySync = DirectorySync()
    ) {
        self.plan = plan
        self.allowedDomains = allowedDomains
        self.defaultDomainRole = defaultDomainRole
        self.viewerSeatsPaid = viewerSeatsPaid
        self.directorySync = directorySync
    }
}

/// Directory-sync settings (`000_*.txt`).
public struct DirectorySync: Sendable, Equatable {
    public var enabled: Bool
    public var roleSync: Bool
    public var roleMappings: [RoleMapping]

    public init(enabled: Bool = false, roleSync: Bool = true, roleMappings: [RoleMapping] = []) {
        self.enabled = enabled
        self.roleSync = roleSync
        self.roleMappings = roleMappings
    }
}

/// A directory group whose members get `role` while role sync is on.
public struct RoleMapping: Sendable, Equatable {
    public var group: String
    public var role: Role

    public init(group: String, role: Role) {
        self.group = group
        self.role = role
    }
}

public struct User: Sendable, Equatable {
    public var id: String
    public var email: String
    public var origin: Origin
    /// The explicit role, if an Admin set one (legacy names already normalised).
    public var role: Role?
    public var active: Bool

    public init(id: String, email: String, origin: Origin, role: Role? = nil, active: Bool = true) {
        self.id = id
        self.email = email
        self.origin = origin
        self.role = role
        self.active = active
    }
}

/// A custom group (never a built-in one).
public struct Group: Sendable, Equatable {
    public var id: String
    public var name: String
    public var source: GroupSource
    /// Member user ids.
    public var members: [String]

    public init(id: String, name: String, source: GroupSource = .workspace, members: [String] = []) {
        self.id = id
        self.name = name
        self.source = source
        self.members = members
    }
}

public struct Asset: Sendable, Equatable {
    public var id: String
    public var kind: AssetKind
    public var name: String
    /// Group ids with access; built-in ids allowed. An omitted list in the document is
    /// `["workspace"]`; an empty list means Admins only.
    public var groups: [String]

    public init(id: String, kind: AssetKind, name: String, groups: [String] = [BuiltinGroup.workspace.name]) {
        self.id = id
        self.kind = kind
        self.name = name
        self.groups = groups
    }
}

public struct Project: Sendable, Equatable {
    public var id: String
    public var owner: String?
    public var workspaceAccess: Level
    /// `none` or `canViewApp`.
    public var publicAccess: Level
    public var grants: [Grant]
    /// Asset ids used by the project.
    public var assets: [String]

    public init(
        id: String,
        owner: String? = nil,
        workspaceAccess: Level = .none,
        publicAccess: Level = .none,
        grants: [Grant] = [],
        assets: [String] = []
    ) {
        self.id = id
        self.owner = owner
        self.workspaceAccess = workspaceAccess
        self.publicAccess = publicAccess
        self.grants = grants
        self.assets = assets
    }
}

/// A project grant to one user or one custom group.
public struct Grant: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        case user(String)
        case group(String)
    }

    public var target: Target
    public var level: Level

    public init(_ target: Target, level: Level) {
        self.target = target
        self.level = level
    }

    public static func user(_ id: String, _ level: Level) -> Grant { Grant(.user(id), level: level) }
    public static func group(_ id: String, _ level: Level) -> Grant { Grant(.group(id), level: level) }
}

/// Rules for external ids (WORKSPACE-FORMAT.md "Ids").
public enum Identifier {
    /// The longest id, in bytes.
    public static let maxLength = 128

    /// 1 to 128 characters from `A-Z a-z 0-9 . _ : @ -`.
    public static func isValid(_ id: String) -> Bool {
        var count = 0
        for byte in id.utf8 {
            count += 1
            guard count <= maxLength, isAllowed(byte) else { return false }
        }
        return count > 0
    }

    /// Whether one byte may appear in an id.
    @inlinable public static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }
}

// The vocabulary of RULES.md §1: roles, levels, plans, asset kinds and every reason code.
// Each enum is a dense UInt8 so the snapshot can store it in flat arrays; `name` is the
// snake_case spelling used by the JSON document, the CLI and the conformance files.

/// A type whose cases have one canonical wire/document spelling.
public protocol NamedEnum: CaseIterable, Sendable, Hashable {
    /// The canonical snake_case spelling.
    var name: String { get }
}

extension NamedEnum {
    /// Parses the canonical spelling (exact, case-sensitive).
    public init?(name: String) {
        guard let found = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = found
    }

    /// Every canonical spelling, in declaration order (for error messages).
    public static var allNames: [String] { allCases.map(\.name) }
}

/// Workspace roles, lowest to highest privilege (RULES.md §1).
public enum Role: UInt8, NamedEnum, Comparable {
    case guest = 0, viewer, explorer, editor, manager, admin

    public var name: String {
        switch self {
        case .guest: "guest"
        case .viewer: "viewer"
        case .explorer: "explorer"
        case .editor: "editor"
        case .manager: "manager"
        case .admin: "admin"
        }
    }

    /// Parses a role as accepted on input: the canonical names plus the legacy names of
    /// `001_*.txt` (`member` = `viewer`, `author` = `editor`), which are normalised.
    public init?(acceptingLegacy name: String) {
        switch name {
        case "member": self = .viewer
        case "author": self = .editor
        default:
            guard let role = Role(name: name) else { return nil }
            self = role
        }
    }

    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Project permission levels, lowest to highest (RULES.md §1).
public enum Level: UInt8, NamedEnum, Comparable {
    case none = 0, canViewApp, canView, canExplore, canEdit, fullAccess

    public var name: String {
        switch self {
        case .none: "none"
        case .canViewApp: "can_view_app"
        case .canView: "can_view"
        case .canExplore: "can_explore"
        case .canEdit: "can_edit"
        case .fullAccess: "full_access"
        }
    }

    public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Billing plans. The `explorer` role exists on `team` and `enterprise` only.
public enum Plan: UInt8, NamedEnum {
    case community = 0, professional, team, enterprise

    public var name: String {
        switch self {
        case .community: "community"
        case .professional: "professional"
        case .team: "team"
        case .enterprise: "enterprise"
        }
    }

    /// Whether the Explorer role exists on this plan (`003_*.txt`).
    public var hasExplorerRole: Bool { self == .team || self == .enterprise }
}

/// Kinds of shared workspace assets.
public enum AssetKind: UInt8, NamedEnum {
    case dataConnection = 0, secret, gitPackage, externalFile

    public var name: String {
        switch self {
        case .dataConnection: "data_connection"
        case .secret: "secret"
        case .gitPackage: "git_package"
        case .externalFile: "external_file"
        }
    }
}

/// Asset access, lowest to highest.
public enum Access: UInt8, NamedEnum, Comparable {
    case none = 0, view, use

    public var name: String {
        switch self {
        case .none: "none"
        case .view: "view"
        case .use: "use"
        }
    }

    public static func < (lhs: Access, rhs: Access) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// How a user came to the workspace.
public enum Origin: UInt8, NamedEnum {
    case manual = 0, domain, invite, directory

    public var name: String {
        switch self {
        case .manual: "manual"
        case .domain: "domain"
        case .invite: "invite"
        case .directory: "directory"
        }
    }
}

/// Where a custom group is managed.
public enum GroupSource: UInt8, NamedEnum {
    case workspace = 0, directory

    public var name: String {
        switch self {
        case .workspace: "workspace"
        case .directory: "directory"
        }
    }
}

/// The reserved built-in groups; never defined by a workspace document.
public enum BuiltinGroup: UInt8, NamedEnum {
    /// Every active user whose role is not `guest`.
    case workspace = 0
    /// Every active user whose role is `guest`.
    case workspaceGuests
    /// Everyone, including an anonymous viewer of an app shared to the web.
    case `public`

    public var name: String {
        switch self {
        case .workspace: "workspace"
        case .workspaceGuests: "workspace_guests"
        case .public: "public"
        }
    }

    /// The bit of this group in an asset's built-in group mask.
    @inlinable public var maskBit: UInt8 { 1 << rawValue }
}

/// How a user's role was resolved (RULES.md §6).
public enum RoleSource: UInt8, NamedEnum {
    case directoryMapping = 0, directoryDefault, explicit, domainDefault, inviteDefault

    public var name: String {
        switch self {
        case .directoryMapping: "directory_mapping"
        case .directoryDefault: "directory_default"
        case .explicit: "explicit"
        case .domainDefault: "domain_default"
        case .inviteDefault: "invite_default"
        }
    }
}

/// Billing seat types (RULES.md §6).
public enum Seat: UInt8, NamedEnum {
    case none = 0, paidAuthor, paidExplorer, viewer, guest

    public var name: String {
        switch self {
        case .none: "none"
        case .paidAuthor: "paid_author"
        case .paidExplorer: "paid_explorer"
        case .viewer: "viewer"
        case .guest: "guest"
        }
    }
}

/// Role capabilities, in the order of the table in RULES.md §3.
public enum Capability: UInt8, NamedEnum {
    case viewAllProjects = 0
    case manageWorkspaceSettings
    case selfGrantFullAccess
    case updateProjectMetadata
    case useEndorsedStatuses
    case createProjects
    case useApi
    case scheduleRuns
    case buildExplorations
    case conditionalNotifications
    case accessWorkspaceProjects
    case accessSharedProjects
    case accessWorkspaceApps
    case accessSharedApps

    public var name: String {
        switch self {
        case .viewAllProjects: "view_all_projects"
        case .manageWorkspaceSettings: "manage_workspace_settings"
        case .selfGrantFullAccess: "self_grant_full_access"
        case .updateProjectMetadata: "update_project_metadata"
        case .useEndorsedStatuses: "use_endorsed_statuses"
        case .createProjects: "create_projects"
        case .useApi: "use_api"
        case .scheduleRuns: "schedule_runs"
        case .buildExplorations: "build_explorations"
        case .conditionalNotifications: "conditional_notifications"
        case .accessWorkspaceProjects: "access_workspace_projects"
        case .accessSharedProjects: "access_shared_projects"
        case .accessWorkspaceApps: "access_workspace_apps"
        case .accessSharedApps: "access_shared_apps"
        }
    }

    /// The lowest role that holds this capability: RULES.md §3's table is monotone in the
    /// role order, so "role ≥ minimum" is the whole table.
    @inlinable public var minimumRole: Role {
        switch self {
        case .viewAllProjects, .manageWorkspaceSettings, .selfGrantFullAccess: .admin
        case .updateProjectMetadata, .useEndorsedStatuses: .manager
        case .createProjects, .useApi: .editor
        case .scheduleRuns, .buildExplorations, .conditionalNotifications: .explorer
        case .accessWorkspaceProjects, .accessWorkspaceApps: .viewer
        case .accessSharedProjects, .accessSharedApps: .guest
        }
    }
}

extension Role {
    /// Whether this role holds `capability` (RULES.md §3).
    @inlinable public func has(_ capability: Capability) -> Bool { self >= capability.minimumRole }

    /// The highest project level this role may hold (RULES.md §4 step 4).
    @inlinable public var levelCap: Level {
        switch self {
        case .viewer: .canView
        case .explorer: .canExplore
        default: .fullAccess
        }
    }
}

/// Every reason code an answer can carry (RULES.md §4 and §5).
public enum Reason: UInt8, NamedEnum {
    // Shared by both decisions.
    case unknownUser = 0
    case userInactive
    case unknownProject
    // EffectivePermission (§4).
    case owner
    case userGrant
    case groupGrant
    case workspaceShare
    case publicShare
    case noGrant
    case adminFloor
    case roleCap
    case exploreNeedsRole
    case assetDowngrade
    // CanUse (§5).
    case unknownAsset
    case admin
    case notInAssetGroups
    case groupAccess
    case roleCannotUse
    case projectNeedsCanEdit
    case anonymousPublic

    public var name: String {
        switch self {
        case .unknownUser: "unknown_user"
        case .userInactive: "user_inactive"
        case .unknownProject: "unknown_project"
        case .owner: "owner"
        case .userGrant: "user_grant"
        case .groupGrant: "group_grant"
        case .workspaceShare: "workspace_share"
        case .publicShare: "public_share"
        case .noGrant: "no_grant"
        case .adminFloor: "admin_floor"
        case .roleCap: "role_cap"
        case .exploreNeedsRole: "explore_needs_role"
        case .assetDowngrade: "asset_downgrade"
        case .unknownAsset: "unknown_asset"
        case .admin: "admin"
        case .notInAssetGroups: "not_in_asset_groups"
        case .groupAccess: "group_access"
        case .roleCannotUse: "role_cannot_use"
        case .projectNeedsCanEdit: "project_needs_can_edit"
        case .anonymousPublic: "anonymous_public"
        }
    }
}

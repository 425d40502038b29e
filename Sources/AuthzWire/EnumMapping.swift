// Total mappings between the protobuf enums of authz.proto (as protobuf-c generates them)
// and the AuthzEngine vocabulary. Every proto enum has `X_UNSPECIFIED = 0` before the real
// values; UNSPECIFIED and values this build does not know map to nil.

internal import AuthzEngine
internal import CAuthzProto

/// An AuthzEngine enum with one value of a protobuf-c enum per case.
protocol ProtoMappedEnum: CaseIterable, Sendable, Equatable {
    associatedtype Proto: RawRepresentable where Proto.RawValue == UInt32
    /// The proto enum's name, for error messages.
    static var protoName: String { get }
    /// The proto value of this case (never UNSPECIFIED).
    var proto: Proto { get }
    /// `fromProto[rawValue]` is the case whose `proto` has that raw value.
    static var fromProto: [Self?] { get }
}

extension ProtoMappedEnum {
    /// The case for a proto value; nil for UNSPECIFIED and for unknown values (protobuf-c
    /// keeps the numeric value of an unknown proto3 enum value, so it must be checked).
    init?(proto: Proto) {
        let index = Int(proto.rawValue)
        let table = Self.fromProto
        guard index < table.count, let value = table[index] else { return nil }
        self = value
    }

    /// Builds `fromProto` from `proto`, so the two directions cannot disagree.
    static func reverseTable() -> [Self?] {
        var table: [Self?] = []
        for value in allCases {
            let index = Int(value.proto.rawValue)
            if index >= table.count { table += repeatElement(nil, count: index + 1 - table.count) }
            precondition(table[index] == nil, "\(protoName): two cases map to proto value \(index)")
            table[index] = value
        }
        return table
    }
}

extension Level: ProtoMappedEnum {
    static let protoName = "Level"
    static let fromProto: [Level?] = reverseTable()

    var proto: Authz__V1__Level {
        switch self {
        case .none: AUTHZ__V1__LEVEL__LEVEL_NONE
        case .canViewApp: AUTHZ__V1__LEVEL__LEVEL_CAN_VIEW_APP
        case .canView: AUTHZ__V1__LEVEL__LEVEL_CAN_VIEW
        case .canExplore: AUTHZ__V1__LEVEL__LEVEL_CAN_EXPLORE
        case .canEdit: AUTHZ__V1__LEVEL__LEVEL_CAN_EDIT
        case .fullAccess: AUTHZ__V1__LEVEL__LEVEL_FULL_ACCESS
        }
    }
}

extension Access: ProtoMappedEnum {
    static let protoName = "Access"
    static let fromProto: [Access?] = reverseTable()

    var proto: Authz__V1__Access {
        switch self {
        case .none: AUTHZ__V1__ACCESS__ACCESS_NONE
        case .view: AUTHZ__V1__ACCESS__ACCESS_VIEW
        case .use: AUTHZ__V1__ACCESS__ACCESS_USE
        }
    }
}

extension Seat: ProtoMappedEnum {
    static let protoName = "Seat"
    static let fromProto: [Seat?] = reverseTable()

    var proto: Authz__V1__Seat {
        switch self {
        case .none: AUTHZ__V1__SEAT__SEAT_NONE
        case .paidAuthor: AUTHZ__V1__SEAT__SEAT_PAID_AUTHOR
        case .paidExplorer: AUTHZ__V1__SEAT__SEAT_PAID_EXPLORER
        case .viewer: AUTHZ__V1__SEAT__SEAT_VIEWER
        case .guest: AUTHZ__V1__SEAT__SEAT_GUEST
        }
    }
}

extension Role: ProtoMappedEnum {
    static let protoName = "Role"
    static let fromProto: [Role?] = reverseTable()

    var proto: Authz__V1__Role {
        switch self {
        case .guest: AUTHZ__V1__ROLE__ROLE_GUEST
        case .viewer: AUTHZ__V1__ROLE__ROLE_VIEWER
        case .explorer: AUTHZ__V1__ROLE__ROLE_EXPLORER
        case .editor: AUTHZ__V1__ROLE__ROLE_EDITOR
        case .manager: AUTHZ__V1__ROLE__ROLE_MANAGER
        case .admin: AUTHZ__V1__ROLE__ROLE_ADMIN
        }
    }
}

extension RoleSource: ProtoMappedEnum {
    static let protoName = "RoleSource"
    static let fromProto: [RoleSource?] = reverseTable()

    var proto: Authz__V1__RoleSource {
        switch self {
        case .directoryMapping: AUTHZ__V1__ROLE_SOURCE__ROLE_SOURCE_DIRECTORY_MAPPING
        case .directoryDefault: AUTHZ__V1__ROLE_SOURCE__ROLE_SOURCE_DIRECTORY_DEFAULT
        case .explicit: AUTHZ__V1__ROLE_SOURCE__ROLE_SOURCE_EXPLICIT
        case .domainDefault: AUTHZ__V1__ROLE_SOURCE__ROLE_SOURCE_DOMAIN_DEFAULT
        case .inviteDefault: AUTHZ__V1__ROLE_SOURCE__ROLE_SOURCE_INVITE_DEFAULT
        }
    }
}

extension Capability: ProtoMappedEnum {
    static let protoName = "Capability"
    static let fromProto: [Capability?] = reverseTable()

    var proto: Authz__V1__Capability {
        switch self {
        case .viewAllProjects: AUTHZ__V1__CAPABILITY__CAPABILITY_VIEW_ALL_PROJECTS
        case .manageWorkspaceSettings: AUTHZ__V1__CAPABILITY__CAPABILITY_MANAGE_WORKSPACE_SETTINGS
        case .selfGrantFullAccess: AUTHZ__V1__CAPABILITY__CAPABILITY_SELF_GRANT_FULL_ACCESS
        case .updateProjectMetadata: AUTHZ__V1__CAPABILITY__CAPABILITY_UPDATE_PROJECT_METADATA
        case .useEndorsedStatuses: AUTHZ__V1__CAPABILITY__CAPABILITY_USE_ENDORSED_STATUSES
        case .createProjects: AUTHZ__V1__CAPABILITY__CAPABILITY_CREATE_PROJECTS
        case .useApi: AUTHZ__V1__CAPABILITY__CAPABILITY_USE_API
        case .scheduleRuns: AUTHZ__V1__CAPABILITY__CAPABILITY_SCHEDULE_RUNS
        case .buildExplorations: AUTHZ__V1__CAPABILITY__CAPABILITY_BUILD_EXPLORATIONS
        case .conditionalNotifications: AUTHZ__V1__CAPABILITY__CAPABILITY_CONDITIONAL_NOTIFICATIONS
        case .accessWorkspaceProjects: AUTHZ__V1__CAPABILITY__CAPABILITY_ACCESS_WORKSPACE_PROJECTS
        case .accessSharedProjects: AUTHZ__V1__CAPABILITY__CAPABILITY_ACCESS_SHARED_PROJECTS
        case .accessWorkspaceApps: AUTHZ__V1__CAPABILITY__CAPABILITY_ACCESS_WORKSPACE_APPS
        case .accessSharedApps: AUTHZ__V1__CAPABILITY__CAPABILITY_ACCESS_SHARED_APPS
        }
    }
}

extension Reason: ProtoMappedEnum {
    static let protoName = "Reason"
    static let fromProto: [Reason?] = reverseTable()

    var proto: Authz__V1__Reason {
        switch self {
        case .unknownUser: AUTHZ__V1__REASON__REASON_UNKNOWN_USER
        case .userInactive: AUTHZ__V1__REASON__REASON_USER_INACTIVE
        case .unknownProject: AUTHZ__V1__REASON__REASON_UNKNOWN_PROJECT
        case .owner: AUTHZ__V1__REASON__REASON_OWNER
        case .userGrant: AUTHZ__V1__REASON__REASON_USER_GRANT
        case .groupGrant: AUTHZ__V1__REASON__REASON_GROUP_GRANT
        case .workspaceShare: AUTHZ__V1__REASON__REASON_WORKSPACE_SHARE
        case .publicShare: AUTHZ__V1__REASON__REASON_PUBLIC_SHARE
        case .noGrant: AUTHZ__V1__REASON__REASON_NO_GRANT
        case .adminFloor: AUTHZ__V1__REASON__REASON_ADMIN_FLOOR
        case .roleCap: AUTHZ__V1__REASON__REASON_ROLE_CAP
        case .exploreNeedsRole: AUTHZ__V1__REASON__REASON_EXPLORE_NEEDS_ROLE
        case .assetDowngrade: AUTHZ__V1__REASON__REASON_ASSET_DOWNGRADE
        case .unknownAsset: AUTHZ__V1__REASON__REASON_UNKNOWN_ASSET
        case .admin: AUTHZ__V1__REASON__REASON_ADMIN
        case .notInAssetGroups: AUTHZ__V1__REASON__REASON_NOT_IN_ASSET_GROUPS
        case .groupAccess: AUTHZ__V1__REASON__REASON_GROUP_ACCESS
        case .roleCannotUse: AUTHZ__V1__REASON__REASON_ROLE_CANNOT_USE
        case .projectNeedsCanEdit: AUTHZ__V1__REASON__REASON_PROJECT_NEEDS_CAN_EDIT
        case .anonymousPublic: AUTHZ__V1__REASON__REASON_ANONYMOUS_PUBLIC
        }
    }
}

// The draft: a workspace as far as it could be read, with holes where a field was missing
// or malformed (already reported). The semantic checks run on drafts, so the same code
// checks a decoded document (holes and all) and a `Workspace` built in code.

import AuthzEngine

/// The state of an optional field.
enum DraftField<Value> {
    /// Not given.
    case absent
    /// Given but unusable; already reported.
    case invalid
    case value(Value)

    var value: Value? {
        if case .value(let value) = self { return value }
        return nil
    }
}

/// A list element with its index in the document (or model) list, for paths.
struct Indexed<Value> {
    var index: Int
    var value: Value
}

struct DraftDocument {
    /// Nil when the `workspace` object is missing or not an object.
    var settings: DraftSettings?
    var users: [DraftUser] = []
    var groups: [DraftGroup] = []
    var assets: [DraftAsset] = []
    var projects: [DraftProject] = []
    /// False when some entry's id could not be read, so "unknown id" cannot be decided.
    var userIdsComplete = true
    var groupIdsComplete = true
    var assetIdsComplete = true
}

struct DraftSettings {
    var plan: Plan?
    var allowedDomains: [Indexed<String>] = []
    var defaultDomainRole: Role? = .viewer
    var viewerSeatsPaid: Bool? = false
    var syncEnabled: Bool? = false
    var roleSync: Bool? = true
    var roleMappings: [DraftRoleMapping] = []
}

struct DraftRoleMapping {
    var index: Int
    var group: String?
    var role: Role?
}

struct DraftUser {
    var index: Int
    var id: String?
    var email: String?
    var origin: Origin?
    var role: DraftField<Role> = .absent
    var active: Bool? = true
}

struct DraftGroup {
    var index: Int
    var id: String?
    var name: String?
    var source: GroupSource? = .workspace
    var members: [Indexed<String>] = []
}

struct DraftAsset {
    var index: Int
    var id: String?
    var kind: AssetKind?
    var name: String?
    var groups: [Indexed<String>] = [Indexed(index: 0, value: BuiltinGroup.workspace.name)]
}

struct DraftProject {
    var index: Int
    var id: String?
    var owner: DraftField<String> = .absent
    var workspaceAccess: Level? = Level.none
    var publicAccess: Level? = Level.none
    var grants: [DraftGrant] = []
    var assets: [Indexed<String>] = []
}

struct DraftGrant {
    var index: Int
    /// Nil when the target is missing, ambiguous or malformed (already reported).
    var target: Grant.Target?
    var level: Level?
}

// MARK: - Model → draft

extension DraftDocument {
    /// The draft of a complete model (no holes; list indexes are model indexes).
    init(_ workspace: Workspace) {
        let settings = workspace.settings
        self.settings = DraftSettings(
            plan: settings.plan,
            allowedDomains: indexed(settings.allowedDomains),
            defaultDomainRole: settings.defaultDomainRole,
            viewerSeatsPaid: settings.viewerSeatsPaid,
            syncEnabled: settings.directorySync.enabled,
            roleSync: settings.directorySync.roleSync,
            roleMappings: settings.directorySync.roleMappings.enumerated().map { index, mapping in
                DraftRoleMapping(index: index, group: mapping.group, role: mapping.role)
            }
        )
        users = workspace.users.enumerated().map { index, user in
            DraftUser(
                index: index, id: user.id, email: user.email, origin: user.origin,
                role: user.role.map(DraftField.value) ?? .absent, active: user.active)
        }
        groups = workspace.groups.enumerated().map { index, group in
            DraftGroup(
                index: index, id: group.id, name: group.name, source: group.source, members: indexed(group.members))
        }
        assets = workspace.assets.enumerated().map { index, asset in
            DraftAsset(index: index, id: asset.id, kind: asset.kind, name: asset.name, groups: indexed(asset.groups))
        }
        projects = workspace.projects.enumerated().map { index, project in
            DraftProject(
                index: index, id: project.id, owner: project.owner.map(DraftField.value) ?? .absent,
                workspaceAccess: project.workspaceAccess, publicAccess: project.publicAccess,
                grants: project.grants.enumerated().map { grantIndex, grant in
                    DraftGrant(index: grantIndex, target: grant.target, level: grant.level)
                },
                assets: indexed(project.assets))
        }
    }
}

private func indexed(_ values: [String]) -> [Indexed<String>] {
    values.enumerated().map { Indexed(index: $0.offset, value: $0.element) }
}

// MARK: - Draft → model

extension DraftDocument {
    /// The model, when every required field is present. Only called when no issue was
    /// found, so nil means a bug in the checks (reported as an issue by the caller).
    func build() -> Workspace? {
        guard let settings, let plan = settings.plan, let defaultDomainRole = settings.defaultDomainRole,
            let viewerSeatsPaid = settings.viewerSeatsPaid, let syncEnabled = settings.syncEnabled,
            let roleSync = settings.roleSync
        else { return nil }
        var mappings: [RoleMapping] = []
        for mapping in settings.roleMappings {
            guard let group = mapping.group, let role = mapping.role else { return nil }
            mappings.append(RoleMapping(group: group, role: role))
        }
        var workspace = Workspace(
            settings: WorkspaceSettings(
                plan: plan,
                allowedDomains: settings.allowedDomains.map(\.value),
                defaultDomainRole: defaultDomainRole,
                viewerSeatsPaid: viewerSeatsPaid,
                directorySync: DirectorySync(enabled: syncEnabled, roleSync: roleSync, roleMappings: mappings)
            )
        )
        for user in users {
            guard let id = user.id, let email = user.email, let origin = user.origin, let active = user.active else {
                return nil
            }
            let role: Role?
            switch user.role {
            case .absent: role = nil
            case .invalid: return nil
            case .value(let value): role = value
            }
            workspace.users.append(User(id: id, email: email, origin: origin, role: role, active: active))
        }
        for group in groups {
            guard let id = group.id, let name = group.name, let source = group.source else { return nil }
            workspace.groups.append(Group(id: id, name: name, source: source, members: group.members.map(\.value)))
        }
        for asset in assets {
            guard let id = asset.id, let kind = asset.kind, let name = asset.name else { return nil }
            workspace.assets.append(Asset(id: id, kind: kind, name: name, groups: asset.groups.map(\.value)))
        }
        for project in projects {
            guard let id = project.id, let workspaceAccess = project.workspaceAccess,
                let publicAccess = project.publicAccess
            else { return nil }
            let owner: String?
            switch project.owner {
            case .absent: owner = nil
            case .invalid: return nil
            case .value(let value): owner = value
            }
            var grants: [Grant] = []
            for grant in project.grants {
                guard let target = grant.target, let level = grant.level else { return nil }
                grants.append(Grant(target, level: level))
            }
            workspace.projects.append(
                Project(
                    id: id, owner: owner, workspaceAccess: workspaceAccess, publicAccess: publicAccess,
                    grants: grants, assets: project.assets.map(\.value)))
        }
        return workspace
    }
}

// MARK: - Paths

enum DocumentPath {
    /// `base.key`, or `key` at the top level. A key that is not a plain name is written
    /// as `base["key"]`.
    static func member(_ base: String, _ key: String) -> String {
        let plain =
            !key.isEmpty
            && key.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
                    true
                default:
                    false
                }
            }
        if plain {
            return base.isEmpty ? key : base + "." + key
        }
        return base + "[" + JSONValue.string(key).serialized() + "]"
    }

    /// `base[index]`.
    static func element(_ base: String, _ index: Int) -> String {
        base + "[" + String(index) + "]"
    }
}

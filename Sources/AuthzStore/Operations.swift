// Fine-grained write operations (`authzctl apply`, issue 13): their model and their JSON
// Lines form. Field names and values are the workspace document's
// (spec/WORKSPACE-FORMAT.md); every problem is reported with its line and JSON path.

import AuthzDocument
public import AuthzEngine

/// One change to the stored workspace.
public enum WorkspaceOperation: Sendable, Equatable {
    case setPlan(Plan)
    case setDefaultDomainRole(Role)
    case setViewerSeatsPaid(Bool)
    case setDirectorySync(enabled: Bool?, roleSync: Bool?)
    case addAllowedDomain(String)
    case removeAllowedDomain(String)
    case addUser(User)
    case removeUser(String)
    case setRole(user: String, role: Role?)
    case setEmail(user: String, email: String)
    case setOrigin(user: String, origin: Origin)
    case deactivateUser(String)
    case reactivateUser(String)
    case addGroup(id: String, name: String, source: GroupSource)
    case removeGroup(String)
    case renameGroup(group: String, name: String)
    case addMember(group: String, user: String)
    case removeMember(group: String, user: String)
    case mapDirectoryGroup(group: String, role: Role?)
    case addAsset(Asset)
    case removeAsset(String)
    case renameAsset(asset: String, name: String)
    case setAssetGroups(asset: String, groups: [String])
    case addProject(id: String, owner: String?, workspaceAccess: Level, publicAccess: Level)
    case removeProject(String)
    case setOwner(project: String, owner: String?)
    case setWorkspaceShare(project: String, level: Level)
    case setPublicShare(project: String, level: Level)
    case grant(project: String, target: Grant.Target, level: Level)
    case revoke(project: String, target: Grant.Target)
    case addProjectAsset(project: String, asset: String)
    case removeProjectAsset(project: String, asset: String)

    /// Every operation name (the `op` field), in documentation order.
    public static let names = [
        "set_plan", "set_default_domain_role", "set_viewer_seats_paid", "set_directory_sync",
        "add_allowed_domain", "remove_allowed_domain",
        "add_user", "remove_user", "set_role", "set_email", "set_origin", "deactivate_user", "reactivate_user",
        "add_group", "remove_group", "rename_group", "add_member", "remove_member", "map_directory_group",
        "add_asset", "remove_asset", "rename_asset", "set_asset_groups",
        "add_project", "remove_project", "set_owner", "set_workspace_share", "set_public_share", "grant", "revoke",
        "add_project_asset", "remove_project_asset",
    ]
}

/// An operation with the input line it came from (1-based).
public struct NumberedOperation: Sendable, Equatable {
    public var line: Int
    public var operation: WorkspaceOperation

    public init(line: Int, operation: WorkspaceOperation) {
        self.line = line
        self.operation = operation
    }
}

/// One problem of an operation: its line (1-based), the JSON path of the field (`.level`;
/// `$` for the line itself) and why.
public struct OperationIssue: Error, Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var path: String
    public var reason: String

    public init(line: Int, path: String, reason: String) {
        self.line = line
        self.path = path
        self.reason = reason
    }

    /// `line 3: .level: 'can_fly' is not a level (none, can_view_app, ...)`.
    public var description: String { "line \(line): \(path): \(reason)" }
}

/// Reads operations from JSON Lines.
public enum OperationReader {
    /// Parses every non-blank line (a trailing CR is ignored); returns the operations of
    /// the lines without problems and every problem found.
    public static func read(_ text: some Collection<UInt8>) -> (operations: [NumberedOperation], issues: [OperationIssue]) {
        var operations: [NumberedOperation] = []
        var issues: [OperationIssue] = []
        let bytes = Array(text)
        var start = 0
        var line = 0
        while start <= bytes.count {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
            line += 1
            var content = bytes[start..<end]
            if content.last == UInt8(ascii: "\r") { content = content.dropLast() }
            if content.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }) {
                switch read(line: content, number: line) {
                case .success(let operation): operations.append(NumberedOperation(line: line, operation: operation))
                case .failure(let problems): issues += problems.issues
                }
            }
            start = end + 1
        }
        return (operations, issues)
    }

    /// The problems of one line.
    public struct LineIssues: Error {
        public var issues: [OperationIssue]
    }

    /// Parses one line.
    public static func read(line: some Collection<UInt8>, number: Int) -> Result<WorkspaceOperation, LineIssues> {
        let value: JSONValue
        do {
            value = try JSONValue.parse(line, rejectDuplicateKeys: true)
        } catch {
            return .failure(LineIssues(issues: [OperationIssue(line: number, path: "$", reason: "\(error.message) at column \(error.column)")]))
        }
        var fields = Fields(value: value, line: number)
        let operation = fields.operation()
        if let operation, fields.issues.isEmpty { return .success(operation) }
        return .failure(LineIssues(issues: fields.issues))
    }
}

/// `text` in single quotes, JSON-escaped.
func quoted(_ text: String) -> String {
    let json = JSONValue.string(text).serialized()
    return "'" + json.dropFirst().dropLast() + "'"
}

/// Reads the fields of one operation object, collecting problems.
private struct Fields {
    let object: JSONObject
    let line: Int
    var issues: [OperationIssue] = []
    private var used: Set<String> = ["op"]

    init(value: JSONValue, line: Int) {
        self.line = line
        if let object = value.object {
            self.object = object
        } else {
            self.object = JSONObject()
            issues.append(OperationIssue(line: line, path: "$", reason: "an operation is a JSON object"))
        }
    }

    mutating func add(_ path: String, _ reason: String) {
        issues.append(OperationIssue(line: line, path: path, reason: reason))
    }

    /// The raw value; nil (and an issue when `required`) when absent.
    mutating func value(_ name: String, required: Bool = true) -> JSONValue? {
        used.insert(name)
        guard let value = object[name] else {
            if required { add(".\(name)", "missing required field '\(name)'") }
            return nil
        }
        return value
    }

    mutating func string(_ name: String, required: Bool = true) -> String? {
        guard let value = value(name, required: required) else { return nil }
        guard let string = value.string else {
            add(".\(name)", "expected a string, got \(value.serialized())")
            return nil
        }
        return string
    }

    mutating func id(_ name: String, required: Bool = true) -> String? {
        guard let id = string(name, required: required) else { return nil }
        guard Identifier.isValid(id) else {
            add(".\(name)", "invalid id \(quoted(id)) (1 to 128 characters from A-Z a-z 0-9 . _ : @ -)")
            return nil
        }
        return id
    }

    /// An id that may be `null` (`.some(nil)`); nil when missing or wrong.
    mutating func nullableID(_ name: String) -> String?? {
        guard let value = value(name) else { return nil }
        if value.isNull { return .some(nil) }
        return id(name).map { .some($0) }
    }

    mutating func bool(_ name: String, required: Bool = true) -> Bool? {
        guard let value = value(name, required: required) else { return nil }
        guard let bool = value.bool else {
            add(".\(name)", "expected true or false, got \(value.serialized())")
            return nil
        }
        return bool
    }

    mutating func enumeration<E: NamedEnum>(
        _ name: String, _ kind: String, as type: E.Type, required: Bool = true, parse: (String) -> E? = E.init(name:)
    ) -> E? {
        guard let string = string(name, required: required) else { return nil }
        guard let value = parse(string) else {
            add(".\(name)", "\(quoted(string)) is not a \(kind) (\(E.allNames.joined(separator: ", ")))")
            return nil
        }
        return value
    }

    mutating func role(_ name: String, required: Bool = true) -> Role? {
        enumeration(name, "role", as: Role.self, required: required, parse: Role.init(acceptingLegacy:))
    }

    /// A role that may be `null`.
    mutating func nullableRole(_ name: String) -> Role?? {
        guard let value = value(name) else { return nil }
        if value.isNull { return .some(nil) }
        return role(name).map { .some($0) }
    }

    mutating func ids(_ name: String) -> [String]? {
        guard let value = value(name) else { return nil }
        guard let array = value.array else {
            add(".\(name)", "expected an array of ids, got \(value.serialized())")
            return nil
        }
        var result: [String] = []
        var valid = true
        for (index, element) in array.enumerated() {
            guard let id = element.string, Identifier.isValid(id) else {
                add(".\(name)[\(index)]", "invalid id \(element.serialized()) (1 to 128 characters from A-Z a-z 0-9 . _ : @ -)")
                valid = false
                continue
            }
            if !result.contains(id) { result.append(id) }
        }
        return valid ? result : nil
    }

    /// Exactly one of `user` and `group`.
    mutating func target() -> Grant.Target? {
        let hasUser = object["user"] != nil, hasGroup = object["group"] != nil
        guard hasUser != hasGroup else {
            used.formUnion(["user", "group"])
            add("$", hasUser ? "give only one of 'user' and 'group'" : "missing 'user' or 'group' (the grant's target)")
            return nil
        }
        if hasUser { return id("user").map(Grant.Target.user) }
        return id("group").map(Grant.Target.group)
    }

    mutating func finish(_ operation: WorkspaceOperation?) -> WorkspaceOperation? {
        for member in object where !used.contains(member.key) {
            add(".\(member.key)", "unknown field \(quoted(member.key))")
        }
        return issues.isEmpty ? operation : nil
    }

    mutating func operation() -> WorkspaceOperation? {
        guard issues.isEmpty else { return nil }
        guard let op = string("op") else { return nil }
        var result: WorkspaceOperation?
        switch op {
        case "set_plan":
            result = enumeration("plan", "plan", as: Plan.self).map { .setPlan($0) }
        case "set_default_domain_role":
            result = role("role").map { .setDefaultDomainRole($0) }
        case "set_viewer_seats_paid":
            result = bool("viewer_seats_paid").map { .setViewerSeatsPaid($0) }
        case "set_directory_sync":
            let enabled = bool("enabled", required: false), roleSync = bool("role_sync", required: false)
            if object["enabled"] == nil && object["role_sync"] == nil {
                add("$", "give 'enabled', 'role_sync' or both")
            }
            result = .setDirectorySync(enabled: enabled, roleSync: roleSync)
        case "add_allowed_domain", "remove_allowed_domain":
            if let domain = string("domain") {
                let lower = domain.lowercased()
                result = op == "add_allowed_domain" ? .addAllowedDomain(lower) : .removeAllowedDomain(lower)
            }
        case "add_user":
            let id = id("id"), email = string("email"), origin = enumeration("origin", "user origin", as: Origin.self)
            var role: Role?
            if let value = object["role"], !value.isNull { role = self.role("role") } else { used.insert("role") }
            let active = bool("active", required: false) ?? true
            if let id, let email, let origin {
                result = .addUser(User(id: id, email: email, origin: origin, role: role, active: active))
            }
        case "remove_user": result = id("user").map { .removeUser($0) }
        case "deactivate_user": result = id("user").map { .deactivateUser($0) }
        case "reactivate_user": result = id("user").map { .reactivateUser($0) }
        case "set_role":
            if let user = id("user"), let role = nullableRole("role") { result = .setRole(user: user, role: role) }
        case "set_email":
            if let user = id("user"), let email = string("email") { result = .setEmail(user: user, email: email) }
        case "set_origin":
            if let user = id("user"), let origin = enumeration("origin", "user origin", as: Origin.self) {
                result = .setOrigin(user: user, origin: origin)
            }
        case "add_group":
            let id = id("id"), name = string("name")
            let source = enumeration("source", "group source", as: GroupSource.self, required: false) ?? .workspace
            if let id, let name { result = .addGroup(id: id, name: name, source: source) }
        case "remove_group": result = id("group").map { .removeGroup($0) }
        case "rename_group":
            if let group = id("group"), let name = string("name") { result = .renameGroup(group: group, name: name) }
        case "add_member", "remove_member":
            if let group = id("group"), let user = id("user") {
                result = op == "add_member" ? .addMember(group: group, user: user) : .removeMember(group: group, user: user)
            }
        case "map_directory_group":
            if let group = id("group"), let role = nullableRole("role") {
                result = .mapDirectoryGroup(group: group, role: role)
            }
        case "add_asset":
            let id = id("id"), name = string("name"), kind = enumeration("kind", "asset kind", as: AssetKind.self)
            let groups = object["groups"] == nil ? [BuiltinGroup.workspace.name] : self.ids("groups")
            if let id, let name, let kind, let groups {
                result = .addAsset(Asset(id: id, kind: kind, name: name, groups: groups))
            }
        case "remove_asset": result = id("asset").map { .removeAsset($0) }
        case "rename_asset":
            if let asset = id("asset"), let name = string("name") { result = .renameAsset(asset: asset, name: name) }
        case "set_asset_groups":
            if let asset = id("asset"), let groups = ids("groups") { result = .setAssetGroups(asset: asset, groups: groups) }
        case "add_project":
            let id = id("id")
            var owner: String?
            if let value = object["owner"], !value.isNull { owner = self.id("owner") } else { used.insert("owner") }
            let workspace = enumeration("workspace_access", "level", as: Level.self, required: false) ?? Level.none
            let publicAccess = enumeration("public_access", "level", as: Level.self, required: false) ?? Level.none
            if let id { result = .addProject(id: id, owner: owner, workspaceAccess: workspace, publicAccess: publicAccess) }
        case "remove_project": result = id("project").map { .removeProject($0) }
        case "set_owner":
            if let project = id("project"), let owner = nullableID("owner") { result = .setOwner(project: project, owner: owner) }
        case "set_workspace_share", "set_public_share":
            let project = id("project")
            var level: Level?
            if let value = value("level") {
                level = value.isNull ? Level.none : enumeration("level", "level", as: Level.self)
            }
            if let project, let level {
                result = op == "set_workspace_share"
                    ? .setWorkspaceShare(project: project, level: level) : .setPublicShare(project: project, level: level)
            }
        case "grant":
            let project = id("project"), target = target(), level = enumeration("level", "level", as: Level.self)
            if let project, let target, let level { result = .grant(project: project, target: target, level: level) }
        case "revoke":
            if let project = id("project"), let target = target() { result = .revoke(project: project, target: target) }
        case "add_project_asset", "remove_project_asset":
            if let project = id("project"), let asset = id("asset") {
                result = op == "add_project_asset"
                    ? .addProjectAsset(project: project, asset: asset) : .removeProjectAsset(project: project, asset: asset)
            }
        default:
            add(".op", "unknown operation \(quoted(op)) (\(WorkspaceOperation.names.joined(separator: ", ")))")
            return nil
        }
        return finish(result)
    }
}

// Applies fine-grained operations (Operations.swift) in one write transaction.
//
// Each operation is checked against the state the operations before it left (so a batch
// may refer to a user, group, asset or project it created on an earlier line) with the
// document's rules: references must exist, ids must be new, `explorer` only on plans that
// have it, a manual user keeps a role, a directory user has none while directory sync and
// role sync are on, public access at most can_view_app, built-in groups are never defined,
// granted or mapped, role mappings name directory groups. An operation with a problem is
// skipped and its problems recorded; the batch goes on so that every problem is reported,
// and at the end any problem rolls the whole transaction back. Operations that would not
// change anything (adding a member twice, deactivating an inactive user) write nothing,
// so they do not bump the version.

import AuthzDocument
import AuthzEngine

struct OperationApplier {
    let connection: Connection
    private(set) var issues: [OperationIssue] = []
    private var line = 0
    private var statements: [String: Statement] = [:]

    init(connection: Connection) {
        self.connection = connection
    }

    // MARK: SQL helpers

    private mutating func statement(_ sql: String) throws(StoreError) -> Statement {
        if let cached = statements[sql] { return cached }
        let statement = try connection.prepare(sql)
        statements[sql] = statement
        return statement
    }

    private mutating func bound(_ sql: String, _ values: [SQLValue]) throws(StoreError) -> Statement {
        let statement = try statement(sql)
        statement.reset()
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            switch value {
            case .integer(let value): try statement.bind(value, at: index)
            case .text(let value): try statement.bind(value, at: index)
            case .null: try statement.bindNull(at: index)
            }
        }
        return statement
    }

    /// Runs a write.
    private mutating func run(_ sql: String, _ values: SQLValue...) throws(StoreError) {
        try bound(sql, values).run()
    }

    /// The first column of the first row as an integer (nil: no row or NULL).
    private mutating func int(_ sql: String, _ values: SQLValue...) throws(StoreError) -> Int64? {
        let statement = try bound(sql, values)
        defer { statement.reset() }
        guard try statement.step(), !statement.isNull(0) else { return nil }
        return statement.int64(0)
    }

    /// The first row's columns as text (nil: no row).
    private mutating func row(_ sql: String, _ values: SQLValue...) throws(StoreError) -> [String?]? {
        let statement = try bound(sql, values)
        defer { statement.reset() }
        guard try statement.step() else { return nil }
        return (0..<statement.columnCount).map { statement.text($0) }
    }

    private mutating func issue(_ path: String, _ reason: String) {
        issues.append(OperationIssue(line: line, path: path, reason: reason))
    }

    // MARK: Lookups

    private mutating func pk(_ table: String, _ id: String) throws(StoreError) -> Int64? {
        try int("SELECT pk FROM \(table) WHERE id = ?", .text(id))
    }

    private mutating func require(_ kind: String, _ table: String, _ id: String, at path: String) throws(StoreError) -> Int64? {
        if let pk = try pk(table, id) { return pk }
        issue(path, "unknown \(kind) \(quoted(id))")
        return nil
    }

    private mutating func requireNew(_ kind: String, _ table: String, _ id: String) throws(StoreError) -> Bool {
        if try pk(table, id) == nil { return true }
        issue(".id", "\(kind) \(quoted(id)) already exists")
        return false
    }

    private mutating func plan() throws(StoreError) -> Plan {
        let name = try row("SELECT plan FROM workspace WHERE id = 1")?.first ?? nil
        return name.flatMap(Plan.init(name:)) ?? .enterprise
    }

    /// Whether directory sync owns directory users' roles (sync and role sync both on).
    private mutating func syncOwnsRoles() throws(StoreError) -> Bool {
        try int("SELECT directory_sync_enabled AND directory_role_sync FROM workspace WHERE id = 1") == 1
    }

    private mutating func checkExplorer(_ role: Role?, at path: String) throws(StoreError) -> Bool {
        guard role == .explorer else { return true }
        let plan = try plan()
        guard plan.hasExplorerRole else {
            issue(path, "role 'explorer' is not available on the \(plan.name) plan (only on team and enterprise)")
            return false
        }
        return true
    }

    private mutating func checkName(_ name: String, at path: String) -> Bool {
        if name.isEmpty { issue(path, "name must not be empty") }
        return !name.isEmpty
    }

    private mutating func checkEmail(_ email: String, at path: String) -> Bool {
        if email.isEmpty {
            issue(path, "email must not be empty")
        } else if !email.utf8.contains(UInt8(ascii: "@")) {
            issue(path, "email \(quoted(email)) must contain '@'")
        } else {
            return true
        }
        return false
    }

    /// A user's role rules: explorer on the plan, manual needs a role, directory users have
    /// none while sync owns roles.
    private mutating func checkUserRole(_ role: Role?, origin: Origin, at path: String) throws(StoreError) -> Bool {
        var valid = try checkExplorer(role, at: path)
        if role == nil && origin == .manual {
            issue(path, "a manual user must have a role")
            valid = false
        }
        if role != nil, origin == .directory, try syncOwnsRoles() {
            issue(
                path,
                "a directory user cannot have a role while directory sync and role sync are on (the role comes from the role mappings)")
            valid = false
        }
        return valid
    }

    /// A custom group for a grant or a mapping (never a built-in one).
    private mutating func customGroup(_ id: String, at path: String, purpose: String) throws(StoreError) -> Int64? {
        if BuiltinGroup(name: id) != nil {
            issue(path, "built-in group \(quoted(id)) cannot be \(purpose)")
            return nil
        }
        return try require("group", "groups", id, at: path)
    }

    /// Asset group ids: each a built-in id or an existing custom group.
    private mutating func assetGroups(_ groups: [String]) throws(StoreError) -> [(key: AssetGroupTarget, value: Int)]? {
        var result: [(key: AssetGroupTarget, value: Int)] = []
        var valid = true
        for (index, id) in groups.enumerated() {
            if BuiltinGroup(name: id) != nil {
                result.append((.builtin(id), 0))
            } else if let pk = try pk("groups", id) {
                result.append((.group(pk), 0))
            } else {
                issue(
                    ".groups[\(index)]",
                    "unknown group \(quoted(id)) (neither a custom group nor a built-in one: \(BuiltinGroup.allNames.joined(separator: ", ")))")
                valid = false
            }
        }
        return valid ? result : nil
    }

    // MARK: Applying

    /// Checks and applies one operation (nothing is written when it has a problem).
    mutating func apply(_ numbered: NumberedOperation) throws(StoreError) {
        line = numbered.line
        let before = issues.count
        do throws(StoreError) {
            try perform(numbered.operation)
        } catch where error.code == .constraint {
            // A rule of the schema this checker does not know: SQLite undid the statement.
            if issues.count == before { issue("$", "rejected by the database: \(error.message)") }
        }
    }

    private mutating func perform(_ operation: WorkspaceOperation) throws(StoreError) {
        switch operation {
        case .setPlan(let plan):
            if !plan.hasExplorerRole {
                if let user = try row("SELECT id FROM users WHERE role = 'explorer' LIMIT 1")?.first ?? nil {
                    issue(".plan", "the \(plan.name) plan has no explorer role, but user \(quoted(user)) has it")
                    return
                }
                if try int("SELECT 1 FROM workspace WHERE default_domain_role = 'explorer'") != nil {
                    issue(".plan", "the \(plan.name) plan has no explorer role, but it is the default domain role")
                    return
                }
                if try int("SELECT 1 FROM role_mappings WHERE role = 'explorer'") != nil {
                    issue(".plan", "the \(plan.name) plan has no explorer role, but a role mapping gives it")
                    return
                }
            }
            try run("UPDATE workspace SET plan = ? WHERE id = 1 AND plan IS NOT ?", .text(plan.name), .text(plan.name))
        case .setDefaultDomainRole(let role):
            guard try checkExplorer(role, at: ".role") else { return }
            try run(
                "UPDATE workspace SET default_domain_role = ? WHERE id = 1 AND default_domain_role IS NOT ?",
                .text(role.name), .text(role.name))
        case .setViewerSeatsPaid(let paid):
            try run(
                "UPDATE workspace SET viewer_seats_paid = ? WHERE id = 1 AND viewer_seats_paid IS NOT ?",
                SQLValue(paid), SQLValue(paid))
        case .setDirectorySync(let enabled, let roleSync):
            guard let current = try row("SELECT directory_sync_enabled, directory_role_sync FROM workspace WHERE id = 1")
            else { return }
            let newEnabled = enabled ?? (current[0] == "1"), newRoleSync = roleSync ?? (current[1] == "1")
            if newEnabled && newRoleSync,
                let user = try row("SELECT id FROM users WHERE origin = 'directory' AND role IS NOT NULL LIMIT 1")?.first
                    ?? nil
            {
                issue(
                    "$",
                    "directory sync and role sync would both be on, but directory user \(quoted(user)) has a role (clear it first with set_role null)")
                return
            }
            try run(
                """
                UPDATE workspace SET directory_sync_enabled = ?, directory_role_sync = ?
                WHERE id = 1 AND (directory_sync_enabled IS NOT ? OR directory_role_sync IS NOT ?)
                """, SQLValue(newEnabled), SQLValue(newRoleSync), SQLValue(newEnabled), SQLValue(newRoleSync))
        case .addAllowedDomain(let domain):
            if domain.isEmpty {
                issue(".domain", "an allowed domain must not be empty")
            } else if domain.utf8.contains(UInt8(ascii: "@")) {
                issue(".domain", "allowed domain \(quoted(domain)) must not contain '@' (write the domain only)")
            } else if domain.unicodeScalars.contains(where: { $0.properties.isWhitespace }) {
                issue(".domain", "allowed domain \(quoted(domain)) must not contain whitespace")
            } else {
                try run("INSERT INTO allowed_domains (domain) VALUES (?) ON CONFLICT DO NOTHING", .text(domain))
            }
        case .removeAllowedDomain(let domain):
            try run("DELETE FROM allowed_domains WHERE domain = ?", .text(domain))

        case .addUser(let user):
            var valid = try requireNew("user", "users", user.id)
            valid = checkEmail(user.email, at: ".email") && valid
            valid = try checkUserRole(user.role, origin: user.origin, at: ".role") && valid
            guard valid else { return }
            try run(
                "INSERT INTO users (id, email, origin, role, active) VALUES (?, ?, ?, ?, ?)",
                .text(user.id), .text(user.email), .text(user.origin.name), SQLValue(user.role?.name), SQLValue(user.active))
        case .removeUser(let id):
            guard let pk = try require("user", "users", id, at: ".user") else { return }
            try run("DELETE FROM users WHERE pk = ?", .integer(pk))
        case .setRole(let id, let role):
            guard let pk = try require("user", "users", id, at: ".user"),
                let origin = try row("SELECT origin FROM users WHERE pk = ?", .integer(pk))?.first.flatMap({ $0 })
                    .flatMap(Origin.init(name:)),
                try checkUserRole(role, origin: origin, at: ".role")
            else { return }
            try run(
                "UPDATE users SET role = ? WHERE pk = ? AND role IS NOT ?", SQLValue(role?.name), .integer(pk),
                SQLValue(role?.name))
        case .setEmail(let id, let email):
            guard let pk = try require("user", "users", id, at: ".user"), checkEmail(email, at: ".email") else { return }
            try run("UPDATE users SET email = ? WHERE pk = ? AND email IS NOT ?", .text(email), .integer(pk), .text(email))
        case .setOrigin(let id, let origin):
            guard let pk = try require("user", "users", id, at: ".user") else { return }
            let role = try row("SELECT role FROM users WHERE pk = ?", .integer(pk))?.first.flatMap { $0 }
            guard try checkUserRole(role.flatMap(Role.init(name:)), origin: origin, at: ".origin") else { return }
            try run(
                "UPDATE users SET origin = ? WHERE pk = ? AND origin IS NOT ?", .text(origin.name), .integer(pk),
                .text(origin.name))
        case .deactivateUser(let id), .reactivateUser(let id):
            guard let pk = try require("user", "users", id, at: ".user") else { return }
            let active: Bool
            if case .reactivateUser = operation { active = true } else { active = false }
            try run("UPDATE users SET active = ? WHERE pk = ? AND active IS NOT ?", SQLValue(active), .integer(pk), SQLValue(active))

        case .addGroup(let id, let name, let source):
            if BuiltinGroup(name: id) != nil {
                issue(".id", "\(quoted(id)) is a built-in group and cannot be defined")
                return
            }
            var valid = try requireNew("group", "groups", id)
            valid = checkName(name, at: ".name") && valid
            guard valid else { return }
            try run("INSERT INTO groups (id, name, source) VALUES (?, ?, ?)", .text(id), .text(name), .text(source.name))
        case .removeGroup(let id):
            guard let pk = try require("group", "groups", id, at: ".group") else { return }
            try run("DELETE FROM groups WHERE pk = ?", .integer(pk))
        case .renameGroup(let id, let name):
            guard let pk = try require("group", "groups", id, at: ".group"), checkName(name, at: ".name") else { return }
            try run("UPDATE groups SET name = ? WHERE pk = ? AND name IS NOT ?", .text(name), .integer(pk), .text(name))
        case .addMember(let group, let user), .removeMember(let group, let user):
            let groupPk = try require("group", "groups", group, at: ".group")
            let userPk = try require("user", "users", user, at: ".user")
            guard let groupPk, let userPk else { return }
            if case .addMember = operation {
                try run(
                    "INSERT INTO group_members (group_pk, user_pk) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    .integer(groupPk), .integer(userPk))
            } else {
                try run("DELETE FROM group_members WHERE group_pk = ? AND user_pk = ?", .integer(groupPk), .integer(userPk))
            }
        case .mapDirectoryGroup(let group, let role):
            guard let groupPk = try customGroup(group, at: ".group", purpose: "used in a role mapping") else { return }
            if try int("SELECT 1 FROM groups WHERE pk = ? AND source = 'directory'", .integer(groupPk)) == nil {
                issue(".group", "group \(quoted(group)) is not a directory group (a role mapping must name a group whose source is 'directory')")
                return
            }
            guard try checkExplorer(role, at: ".role") else { return }
            guard let role else {
                try run("DELETE FROM role_mappings WHERE group_pk = ?", .integer(groupPk))
                return
            }
            if let first = try int("SELECT min(pk) FROM role_mappings WHERE group_pk = ?", .integer(groupPk)) {
                try run("UPDATE role_mappings SET role = ? WHERE pk = ? AND role IS NOT ?", .text(role.name), .integer(first), .text(role.name))
                try run("DELETE FROM role_mappings WHERE group_pk = ? AND pk <> ?", .integer(groupPk), .integer(first))
            } else {
                try run("INSERT INTO role_mappings (group_pk, role) VALUES (?, ?)", .integer(groupPk), .text(role.name))
            }

        case .addAsset(let asset):
            var valid = try requireNew("asset", "assets", asset.id)
            valid = checkName(asset.name, at: ".name") && valid
            let groups = try assetGroups(asset.groups)
            guard valid, let groups else { return }
            try run("INSERT INTO assets (id, kind, name) VALUES (?, ?, ?)", .text(asset.id), .text(asset.kind.name), .text(asset.name))
            guard let pk = try pk("assets", asset.id) else { return }
            try writeAssetGroups(pk, groups)
        case .removeAsset(let id):
            guard let pk = try require("asset", "assets", id, at: ".asset") else { return }
            try run("DELETE FROM assets WHERE pk = ?", .integer(pk))
        case .renameAsset(let id, let name):
            guard let pk = try require("asset", "assets", id, at: ".asset"), checkName(name, at: ".name") else { return }
            try run("UPDATE assets SET name = ? WHERE pk = ? AND name IS NOT ?", .text(name), .integer(pk), .text(name))
        case .setAssetGroups(let id, let groups):
            let pk = try require("asset", "assets", id, at: ".asset")
            let wanted = try assetGroups(groups)
            guard let pk, let wanted else { return }
            try writeAssetGroups(pk, wanted)

        case .addProject(let id, let owner, let workspaceAccess, let publicAccess):
            var valid = try requireNew("project", "projects", id)
            var ownerPk: Int64?
            if let owner {
                ownerPk = try require("user", "users", owner, at: ".owner")
                valid = ownerPk != nil && valid
            }
            valid = checkPublic(publicAccess, at: ".public_access") && valid
            guard valid else { return }
            try run(
                "INSERT INTO projects (id, owner_pk, workspace_access, public_access) VALUES (?, ?, ?, ?)",
                .text(id), SQLValue(ownerPk), .text(workspaceAccess.name), .text(publicAccess.name))
        case .removeProject(let id):
            guard let pk = try require("project", "projects", id, at: ".project") else { return }
            try run("DELETE FROM projects WHERE pk = ?", .integer(pk))
        case .setOwner(let id, let owner):
            let pk = try require("project", "projects", id, at: ".project")
            var ownerPk: Int64?
            if let owner {
                ownerPk = try require("user", "users", owner, at: ".owner")
                if ownerPk == nil { return }
            }
            guard let pk else { return }
            try run(
                "UPDATE projects SET owner_pk = ? WHERE pk = ? AND owner_pk IS NOT ?", SQLValue(ownerPk), .integer(pk),
                SQLValue(ownerPk))
        case .setWorkspaceShare(let id, let level):
            guard let pk = try require("project", "projects", id, at: ".project") else { return }
            try run(
                "UPDATE projects SET workspace_access = ? WHERE pk = ? AND workspace_access IS NOT ?", .text(level.name),
                .integer(pk), .text(level.name))
        case .setPublicShare(let id, let level):
            let pk = try require("project", "projects", id, at: ".project")
            guard checkPublic(level, at: ".level"), let pk else { return }
            try run(
                "UPDATE projects SET public_access = ? WHERE pk = ? AND public_access IS NOT ?", .text(level.name),
                .integer(pk), .text(level.name))
        case .grant(let id, let target, let level):
            let pk = try require("project", "projects", id, at: ".project")
            guard let column = try grantTarget(target), let pk else { return }
            if let first = try int(
                "SELECT min(pk) FROM project_grants WHERE project_pk = ? AND \(column.name) = ?", .integer(pk),
                .integer(column.pk))
            {
                try run(
                    "UPDATE project_grants SET level = ? WHERE pk = ? AND level IS NOT ?", .text(level.name),
                    .integer(first), .text(level.name))
                try run(
                    "DELETE FROM project_grants WHERE project_pk = ? AND \(column.name) = ? AND pk <> ?", .integer(pk),
                    .integer(column.pk), .integer(first))
            } else {
                try run(
                    "INSERT INTO project_grants (project_pk, \(column.name), level) VALUES (?, ?, ?)", .integer(pk),
                    .integer(column.pk), .text(level.name))
            }
        case .revoke(let id, let target):
            let pk = try require("project", "projects", id, at: ".project")
            guard let column = try grantTarget(target), let pk else { return }
            try run(
                "DELETE FROM project_grants WHERE project_pk = ? AND \(column.name) = ?", .integer(pk), .integer(column.pk))
        case .addProjectAsset(let project, let asset), .removeProjectAsset(let project, let asset):
            let projectPk = try require("project", "projects", project, at: ".project")
            let assetPk = try require("asset", "assets", asset, at: ".asset")
            guard let projectPk, let assetPk else { return }
            if case .addProjectAsset = operation {
                try run(
                    "INSERT INTO project_assets (project_pk, asset_pk) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    .integer(projectPk), .integer(assetPk))
            } else {
                try run(
                    "DELETE FROM project_assets WHERE project_pk = ? AND asset_pk = ?", .integer(projectPk), .integer(assetPk))
            }
        }
    }

    private mutating func checkPublic(_ level: Level, at path: String) -> Bool {
        guard level == .none || level == .canViewApp else {
            issue(path, "public access must be 'none' or 'can_view_app', not '\(level.name)'")
            return false
        }
        return true
    }

    /// The grant target's column and row.
    private mutating func grantTarget(_ target: Grant.Target) throws(StoreError) -> (name: String, pk: Int64)? {
        switch target {
        case .user(let id):
            return try require("user", "users", id, at: ".user").map { ("user_pk", $0) }
        case .group(let id):
            return try customGroup(
                id, at: ".group",
                purpose: "granted (grant a custom group; share with everyone through set_workspace_share or set_public_share)"
            ).map { ("group_pk", $0) }
        }
    }

    /// Makes an asset's group list `wanted`, writing only the difference (in order).
    private mutating func writeAssetGroups(_ asset: Int64, _ wanted: [(key: AssetGroupTarget, value: Int)]) throws(StoreError) {
        var stored: [StoredEntry<AssetGroupTarget, Int>] = []
        let statement = try bound("SELECT pk, group_pk, builtin FROM asset_groups WHERE asset_pk = ? ORDER BY pk", [.integer(asset)])
        while try statement.step() {
            let target: AssetGroupTarget =
                statement.isNull(1) ? .builtin(statement.text(2) ?? "") : .group(statement.int64(1))
            stored.append(StoredEntry(pk: statement.int64(0), key: target, value: 0))
        }
        statement.reset()
        var deletes: [Int64] = []
        var inserts: [AssetGroupTarget] = []
        diffList(stored: stored, wanted: wanted, update: { _, _ in }, delete: { deletes.append($0) }, insert: { key, _ in inserts.append(key) })
        for pk in deletes { try run("DELETE FROM asset_groups WHERE pk = ?", .integer(pk)) }
        for target in inserts {
            switch target {
            case .group(let group):
                try run("INSERT INTO asset_groups (asset_pk, group_pk) VALUES (?, ?)", .integer(asset), .integer(group))
            case .builtin(let name):
                try run("INSERT INTO asset_groups (asset_pk, builtin) VALUES (?, ?)", .integer(asset), .text(name))
            }
        }
    }
}

// Reads the whole stored workspace. Shared by `WorkspaceStore.exportWorkspace` and the
// `SnapshotLoader`; the caller runs it inside one read transaction.
//
// Speed matters (the loader reads ~2M rows): each table is scanned once in rowid (= list)
// order; link rows are resolved with integer rowid → array index maps instead of joins or
// string lookups, and their target ids are shared (retained) from the entity's id array
// rather than read again. Enum columns are decoded from SQLite's bytes without creating a
// String. Every value the schema should have prevented (a dangling reference after an
// edit with foreign keys off, an unknown enum name) is a `.corrupt` error naming the row.

import AuthzEngine

struct WorkspaceReader {
    let connection: Connection

    func read() throws(StoreError) -> (workspace: Workspace, version: UInt64) {
        try connection.requireCurrentSchema()
        let version = try connection.snapshotVersion()
        var settings = try readSettings()
        settings.allowedDomains = try readDomains()

        let users = try readUsers()
        var groups = try readGroups()
        try readMembers(into: &groups.values, groupIndex: groups.index, userIndex: users.index, userIDs: users.ids)
        settings.directorySync.roleMappings = try readRoleMappings(groupIndex: groups.index, groupIDs: groups.ids)
        var assets = try readAssets()
        try readAssetGroups(into: &assets.values, assetIndex: assets.index, groupIndex: groups.index, groupIDs: groups.ids)
        var projects = try readProjects(userIndex: users.index, userIDs: users.ids)
        try readGrants(
            into: &projects.values, projectIndex: projects.index,
            userIndex: users.index, userIDs: users.ids, groupIndex: groups.index, groupIDs: groups.ids)
        try readProjectAssets(
            into: &projects.values, projectIndex: projects.index, assetIndex: assets.index, assetIDs: assets.ids)

        let workspace = Workspace(
            settings: settings, users: users.values, groups: groups.values,
            assets: assets.values, projects: projects.values)
        return (workspace, version)
    }

    // MARK: Errors

    private func corrupt(_ table: String, _ pk: Int64, _ problem: String) -> StoreError {
        StoreError(
            code: .corrupt,
            message: "\(connection.path): \(table) row \(pk): \(problem) "
                + "(edited with foreign keys or CHECK constraints off? see PRAGMA foreign_key_check)")
    }

    private func text(_ statement: Statement, _ column: Int32, _ table: String, _ pk: Int64, _ name: String)
        throws(StoreError) -> String
    {
        guard let value = statement.text(column) else { throw corrupt(table, pk, "\(name) is NULL") }
        return value
    }

    private func decode<E: NamedEnum>(
        _ names: EnumNames<E>, _ statement: Statement, _ column: Int32, _ table: String, _ pk: Int64, _ name: String
    ) throws(StoreError) -> E {
        guard let value = statement.withTextBytes(column, { names.decode($0) }) else {
            throw corrupt(table, pk, "\(name) '\(statement.text(column) ?? "NULL")' is not one of \(E.allNames)")
        }
        return value
    }

    private func flag(_ statement: Statement, _ column: Int32, _ table: String, _ pk: Int64, _ name: String)
        throws(StoreError) -> Bool
    {
        switch statement.isNull(column) ? -1 : statement.int64(column) {
        case 0: return false
        case 1: return true
        default: throw corrupt(table, pk, "\(name) is not 0 or 1")
        }
    }

    /// The array index of the row a link column refers to.
    private func resolve(
        _ index: RowIndex, _ statement: Statement, _ column: Int32,
        _ table: String, _ pk: Int64, _ name: String, _ target: String
    ) throws(StoreError) -> Int {
        let rowid = statement.int64(column)
        guard let found = index[rowid] else {
            throw corrupt(table, pk, "\(name) \(rowid) does not exist in \(target)")
        }
        return found
    }

    // MARK: Tables

    private func readSettings() throws(StoreError) -> WorkspaceSettings {
        let statement = try connection.prepare("""
            SELECT plan, default_domain_role, viewer_seats_paid, directory_sync_enabled, directory_role_sync
            FROM workspace WHERE id = 1
            """)
        guard try statement.step() else {
            throw StoreError(code: .notInitialized, message: "\(connection.path): no workspace has been imported yet")
        }
        let table = "workspace", pk: Int64 = 1
        return WorkspaceSettings(
            plan: try decode(EnumNames<Plan>(), statement, 0, table, pk, "plan"),
            defaultDomainRole: try decode(EnumNames<Role>(), statement, 1, table, pk, "default_domain_role"),
            viewerSeatsPaid: try flag(statement, 2, table, pk, "viewer_seats_paid"),
            directorySync: DirectorySync(
                enabled: try flag(statement, 3, table, pk, "directory_sync_enabled"),
                roleSync: try flag(statement, 4, table, pk, "directory_role_sync")))
    }

    private func readDomains() throws(StoreError) -> [String] {
        let statement = try connection.prepare("SELECT pk, domain FROM allowed_domains ORDER BY pk")
        var domains: [String] = []
        while try statement.step() {
            domains.append(try text(statement, 1, "allowed_domains", statement.int64(0), "domain"))
        }
        return domains
    }

    /// Rows of one entity table: the values, their ids, and rowid → index.
    struct Entities<Value> {
        var values: [Value] = []
        var ids: [String] = []
        var rowids: [Int64] = []
        var index = RowIndex()

        mutating func append(_ value: Value, id: String, rowid: Int64) {
            values.append(value)
            ids.append(id)
            rowids.append(rowid)
        }

        mutating func finish() {
            index = RowIndex(sortedRowids: rowids)
            rowids = []
        }
    }

    private func readUsers() throws(StoreError) -> Entities<User> {
        let statement = try connection.prepare(
            "SELECT pk, id, email, origin, role, active FROM users ORDER BY pk")
        let origins = EnumNames<Origin>(), roles = EnumNames<Role>()
        let table = "users"
        var users = Entities<User>()
        while try statement.step() {
            let pk = statement.int64(0)
            let id = try text(statement, 1, table, pk, "id")
            var role: Role?
            if !statement.isNull(4) { role = try decode(roles, statement, 4, table, pk, "role") }
            let user = User(
                id: id,
                email: try text(statement, 2, table, pk, "email"),
                origin: try decode(origins, statement, 3, table, pk, "origin"),
                role: role,
                active: try flag(statement, 5, table, pk, "active"))
            users.append(user, id: id, rowid: pk)
        }
        users.finish()
        return users
    }

    private func readGroups() throws(StoreError) -> Entities<Group> {
        let statement = try connection.prepare("SELECT pk, id, name, source FROM groups ORDER BY pk")
        let sources = EnumNames<GroupSource>()
        let table = "groups"
        var groups = Entities<Group>()
        while try statement.step() {
            let pk = statement.int64(0)
            let id = try text(statement, 1, table, pk, "id")
            let group = Group(
                id: id,
                name: try text(statement, 2, table, pk, "name"),
                source: try decode(sources, statement, 3, table, pk, "source"))
            groups.append(group, id: id, rowid: pk)
        }
        groups.finish()
        return groups
    }

    private func readMembers(
        into groups: inout [Group], groupIndex: RowIndex, userIndex: RowIndex, userIDs: [String]
    ) throws(StoreError) {
        let statement = try connection.prepare("SELECT pk, group_pk, user_pk FROM group_members ORDER BY pk")
        let table = "group_members"
        while try statement.step() {
            let pk = statement.int64(0)
            let group = try resolve(groupIndex, statement, 1, table, pk, "group_pk", "groups")
            let user = try resolve(userIndex, statement, 2, table, pk, "user_pk", "users")
            groups[group].members.append(userIDs[user])
        }
    }

    private func readRoleMappings(groupIndex: RowIndex, groupIDs: [String]) throws(StoreError) -> [RoleMapping] {
        let statement = try connection.prepare("SELECT pk, group_pk, role FROM role_mappings ORDER BY pk")
        let roles = EnumNames<Role>()
        let table = "role_mappings"
        var mappings: [RoleMapping] = []
        while try statement.step() {
            let pk = statement.int64(0)
            let group = try resolve(groupIndex, statement, 1, table, pk, "group_pk", "groups")
            mappings.append(RoleMapping(group: groupIDs[group], role: try decode(roles, statement, 2, table, pk, "role")))
        }
        return mappings
    }

    private func readAssets() throws(StoreError) -> Entities<Asset> {
        let statement = try connection.prepare("SELECT pk, id, kind, name FROM assets ORDER BY pk")
        let kinds = EnumNames<AssetKind>()
        let table = "assets"
        var assets = Entities<Asset>()
        while try statement.step() {
            let pk = statement.int64(0)
            let id = try text(statement, 1, table, pk, "id")
            let asset = Asset(
                id: id,
                kind: try decode(kinds, statement, 2, table, pk, "kind"),
                name: try text(statement, 3, table, pk, "name"),
                groups: [])
            assets.append(asset, id: id, rowid: pk)
        }
        assets.finish()
        return assets
    }

    private func readAssetGroups(
        into assets: inout [Asset], assetIndex: RowIndex, groupIndex: RowIndex, groupIDs: [String]
    ) throws(StoreError) {
        let statement = try connection.prepare(
            "SELECT pk, asset_pk, group_pk, builtin FROM asset_groups ORDER BY pk")
        let builtins = EnumNames<BuiltinGroup>()
        let table = "asset_groups"
        while try statement.step() {
            let pk = statement.int64(0)
            let asset = try resolve(assetIndex, statement, 1, table, pk, "asset_pk", "assets")
            let groupID: String
            switch (statement.isNull(2), statement.isNull(3)) {
            case (false, true):
                groupID = groupIDs[try resolve(groupIndex, statement, 2, table, pk, "group_pk", "groups")]
            case (true, false):
                groupID = try decode(builtins, statement, 3, table, pk, "builtin").name
            default:
                throw corrupt(table, pk, "exactly one of group_pk and builtin must be set")
            }
            assets[asset].groups.append(groupID)
        }
    }

    private func readProjects(userIndex: RowIndex, userIDs: [String]) throws(StoreError) -> Entities<Project> {
        let statement = try connection.prepare(
            "SELECT pk, id, owner_pk, workspace_access, public_access FROM projects ORDER BY pk")
        let levels = EnumNames<Level>()
        let table = "projects"
        var projects = Entities<Project>()
        while try statement.step() {
            let pk = statement.int64(0)
            let id = try text(statement, 1, table, pk, "id")
            var owner: String?
            if !statement.isNull(2) { owner = userIDs[try resolve(userIndex, statement, 2, table, pk, "owner_pk", "users")] }
            let project = Project(
                id: id,
                owner: owner,
                workspaceAccess: try decode(levels, statement, 3, table, pk, "workspace_access"),
                publicAccess: try decode(levels, statement, 4, table, pk, "public_access"))
            projects.append(project, id: id, rowid: pk)
        }
        projects.finish()
        return projects
    }

    private func readGrants(
        into projects: inout [Project], projectIndex: RowIndex,
        userIndex: RowIndex, userIDs: [String], groupIndex: RowIndex, groupIDs: [String]
    ) throws(StoreError) {
        let statement = try connection.prepare(
            "SELECT pk, project_pk, user_pk, group_pk, level FROM project_grants ORDER BY pk")
        let levels = EnumNames<Level>()
        let table = "project_grants"
        while try statement.step() {
            let pk = statement.int64(0)
            let project = try resolve(projectIndex, statement, 1, table, pk, "project_pk", "projects")
            let target: Grant.Target
            switch (statement.isNull(2), statement.isNull(3)) {
            case (false, true):
                target = .user(userIDs[try resolve(userIndex, statement, 2, table, pk, "user_pk", "users")])
            case (true, false):
                target = .group(groupIDs[try resolve(groupIndex, statement, 3, table, pk, "group_pk", "groups")])
            default:
                throw corrupt(table, pk, "exactly one of user_pk and group_pk must be set")
            }
            let level = try decode(levels, statement, 4, table, pk, "level")
            projects[project].grants.append(Grant(target, level: level))
        }
    }

    private func readProjectAssets(
        into projects: inout [Project], projectIndex: RowIndex, assetIndex: RowIndex, assetIDs: [String]
    ) throws(StoreError) {
        let statement = try connection.prepare(
            "SELECT pk, project_pk, asset_pk FROM project_assets ORDER BY pk")
        let table = "project_assets"
        while try statement.step() {
            let pk = statement.int64(0)
            let project = try resolve(projectIndex, statement, 1, table, pk, "project_pk", "projects")
            let asset = try resolve(assetIndex, statement, 2, table, pk, "asset_pk", "assets")
            projects[project].assets.append(assetIDs[asset])
        }
    }
}

/// Maps rowids (read in ascending order) to array indexes: a flat table when the rowids
/// are reasonably dense (the importer writes 1...n), a dictionary otherwise.
struct RowIndex {
    private var dense: [Int32] = []
    private var sparse: [Int64: Int] = [:]

    init() {}

    init(sortedRowids rowids: [Int64]) {
        guard let first = rowids.first, let last = rowids.last else { return }
        if first >= 0, last < Int64(rowids.count) * 2 + 1024, rowids.count < Int(Int32.max) {
            dense = Array(repeating: -1, count: Int(last) + 1)
            for (index, rowid) in rowids.enumerated() { dense[Int(rowid)] = Int32(index) }
        } else {
            sparse.reserveCapacity(rowids.count)
            for (index, rowid) in rowids.enumerated() { sparse[rowid] = index }
        }
    }

    subscript(rowid: Int64) -> Int? {
        if !dense.isEmpty {
            guard rowid >= 0, rowid < Int64(dense.count) else { return nil }
            let index = dense[Int(rowid)]
            return index >= 0 ? Int(index) : nil
        }
        return sparse[rowid]
    }
}

/// Decodes an enum from its canonical spelling's UTF-8 bytes without building a String.
struct EnumNames<E: NamedEnum> {
    private let entries: [(name: [UInt8], value: E)]

    init() {
        entries = E.allCases.map { (Array($0.name.utf8), $0) }
    }

    func decode(_ bytes: UnsafeBufferPointer<UInt8>?) -> E? {
        guard let bytes else { return nil }
        for entry in entries where entry.name.count == bytes.count && entry.name.elementsEqual(bytes) {
            return entry.value
        }
        return nil
    }
}

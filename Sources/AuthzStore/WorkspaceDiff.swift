// The diff import (issue 13): compares a validated workspace with the stored rows and
// writes only the difference, with the row triggers in place, so the snapshot version and
// the change log grow by the rows that changed.
//
// Entities (users, groups, assets, projects) are matched by id: a new id is inserted (at
// the end of its table, so the export lists it last), a changed one updated in place, a
// missing one deleted (its link rows go with it by the cascade). The allowed domains, role
// mappings and every per-parent list (members, asset groups, grants, project assets) keep
// their exact order: the longest prefix of the wanted list that is a subsequence of the
// stored one is kept (a kept entry whose value differs, a grant's level or a mapping's
// role, is updated), every other stored entry is deleted and the rest of the wanted list
// inserted. So appending, removing anywhere and changing a level cost one row each; moving
// an entry earlier re-inserts the entries it jumped over. Repeated grants and role
// mappings match in order.

import AuthzDocument
import AuthzEngine

/// One row write of a plan.
struct PlannedWrite {
    let sql: String
    let values: [SQLValue]
}

/// The rows to write, in the order that keeps every constraint satisfied at every step.
struct DiffPlan {
    var settings: [PlannedWrite] = []
    var insertEntities: [PlannedWrite] = []
    var updates: [PlannedWrite] = []
    var deleteLinks: [PlannedWrite] = []
    var deleteEntities: [PlannedWrite] = []
    var insertLinks: [PlannedWrite] = []
    /// References to ids the workspace does not define (0 for a validated workspace).
    var unresolvedReferences = 0

    var count: Int {
        settings.count + insertEntities.count + updates.count + deleteLinks.count + deleteEntities.count
            + insertLinks.count
    }

    var phases: [[PlannedWrite]] { [settings, insertEntities, updates, deleteLinks, deleteEntities, insertLinks] }
}

/// A stored list entry: its row, what it points at, its value.
struct StoredEntry<Key: Equatable, Value: Equatable> {
    let pk: Int64
    let key: Key
    let value: Value
}

enum AssetGroupTarget: Hashable {
    case group(Int64)
    case builtin(String)
}


/// The ordered list diff described at the top of the file: the longest prefix of `wanted`
/// that is a subsequence of `stored` (matched by key, greedily, which is optimal) stays,
/// with its values updated; every other stored entry is deleted and the rest of `wanted`
/// inserted (after the kept entries, since new rows get larger rowids). Repeated keys match
/// in order. O(stored + wanted).
func diffList<Key: Equatable, Value: Equatable>(
    stored: [StoredEntry<Key, Value>], wanted: [(key: Key, value: Value)],
    update: (Int64, Value) -> Void, delete: (Int64) -> Void, insert: (Key, Value) -> Void
) {
    var kept = [Bool](repeating: false, count: stored.count)
    var next = 0
    var matched = 0
    while matched < wanted.count {
        let key = wanted[matched].key
        var found = next
        while found < stored.count && stored[found].key != key { found += 1 }
        guard found < stored.count else { break }
        if stored[found].value != wanted[matched].value { update(stored[found].pk, wanted[matched].value) }
        kept[found] = true
        next = found + 1
        matched += 1
    }
    for (index, entry) in stored.enumerated() where !kept[index] { delete(entry.pk) }
    for entry in wanted[matched...] { insert(entry.key, entry.value) }
}

/// The stored rows, with their rowids, as the diff needs them.
struct StoredRows {
    struct UserRow: Equatable {
        var email: String
        var origin: String
        var role: String?
        var active: Bool
    }

    struct ProjectRow: Equatable {
        var owner: Int64?
        var workspaceAccess: String
        var publicAccess: String
    }

    var settings: [SQLValue]?
    var domains: [StoredEntry<String, Int>] = []
    var users: [String: (pk: Int64, row: UserRow)] = [:]
    var groups: [String: (pk: Int64, name: String, source: String)] = [:]
    // List entries name their targets by id (read off the critical path, while the
    // document decodes), so the plan compares strings in list order instead of looking
    // every reference up; only inserted entries need a rowid.
    var members: [Int64: [StoredEntry<String, Int>]] = [:]
    var roleMappings: [StoredEntry<String, String>] = []
    var assets: [String: (pk: Int64, kind: String, name: String)] = [:]
    var assetGroups: [Int64: [StoredEntry<String, Int>]] = [:]
    var projects: [String: (pk: Int64, row: ProjectRow)] = [:]
    var grants: [Int64: [StoredEntry<Grant.Target, String>]] = [:]
    var projectAssets: [Int64: [StoredEntry<String, Int>]] = [:]
    var maxPk: [String: Int64] = [:]
    /// Rows in the data tables.
    var rowCount = 0

    init(_ connection: Connection) throws(StoreError) {
        func text(_ statement: Statement, _ column: Int32) -> String { statement.text(column) ?? "" }
        func optionalInt(_ statement: Statement, _ column: Int32) -> Int64? {
            statement.isNull(column) ? nil : statement.int64(column)
        }
        var statement = try connection.prepare("""
            SELECT plan, default_domain_role, viewer_seats_paid, directory_sync_enabled, directory_role_sync
            FROM workspace WHERE id = 1
            """)
        if try statement.step() {
            settings = [
                .text(text(statement, 0)), .text(text(statement, 1)), .integer(statement.int64(2)),
                .integer(statement.int64(3)), .integer(statement.int64(4)),
            ]
            rowCount += 1
        }
        statement = try connection.prepare("SELECT pk, domain FROM allowed_domains ORDER BY pk")
        while try statement.step() {
            domains.append(StoredEntry(pk: statement.int64(0), key: text(statement, 1), value: 0))
        }
        var userIDs: [Int64: String] = [:], groupIDs: [Int64: String] = [:], assetIDs: [Int64: String] = [:]
        func id(_ ids: [Int64: String], _ statement: Statement, _ column: Int32) -> String {
            let pk = statement.int64(column)
            return ids[pk] ?? "#\(pk)"
        }
        statement = try connection.prepare("SELECT pk, id, email, origin, role, active FROM users")
        while try statement.step() {
            userIDs[statement.int64(0)] = text(statement, 1)
            users[text(statement, 1)] = (
                statement.int64(0),
                UserRow(
                    email: text(statement, 2), origin: text(statement, 3), role: statement.text(4),
                    active: statement.int64(5) != 0)
            )
        }
        statement = try connection.prepare("SELECT pk, id, name, source FROM groups")
        while try statement.step() {
            groupIDs[statement.int64(0)] = text(statement, 1)
            groups[text(statement, 1)] = (statement.int64(0), text(statement, 2), text(statement, 3))
        }
        statement = try connection.prepare("SELECT pk, id, kind, name FROM assets")
        while try statement.step() {
            assetIDs[statement.int64(0)] = text(statement, 1)
            assets[text(statement, 1)] = (statement.int64(0), text(statement, 2), text(statement, 3))
        }
        statement = try connection.prepare("SELECT pk, group_pk, user_pk FROM group_members ORDER BY pk")
        while try statement.step() {
            members[statement.int64(1), default: []].append(
                StoredEntry(pk: statement.int64(0), key: id(userIDs, statement, 2), value: 0))
            rowCount += 1
        }
        statement = try connection.prepare("SELECT pk, group_pk, role FROM role_mappings ORDER BY pk")
        while try statement.step() {
            roleMappings.append(
                StoredEntry(pk: statement.int64(0), key: id(groupIDs, statement, 1), value: text(statement, 2)))
        }
        statement = try connection.prepare("SELECT pk, asset_pk, group_pk, builtin FROM asset_groups ORDER BY pk")
        while try statement.step() {
            let target = statement.isNull(2) ? text(statement, 3) : id(groupIDs, statement, 2)
            assetGroups[statement.int64(1), default: []].append(
                StoredEntry(pk: statement.int64(0), key: target, value: 0))
            rowCount += 1
        }
        statement = try connection.prepare("SELECT pk, id, owner_pk, workspace_access, public_access FROM projects")
        while try statement.step() {
            projects[text(statement, 1)] = (
                statement.int64(0),
                ProjectRow(
                    owner: optionalInt(statement, 2), workspaceAccess: text(statement, 3),
                    publicAccess: text(statement, 4))
            )
        }
        statement = try connection.prepare(
            "SELECT pk, project_pk, user_pk, group_pk, level FROM project_grants ORDER BY pk")
        while try statement.step() {
            let target: Grant.Target =
                statement.isNull(2) ? .group(id(groupIDs, statement, 3)) : .user(id(userIDs, statement, 2))
            grants[statement.int64(1), default: []].append(
                StoredEntry(pk: statement.int64(0), key: target, value: text(statement, 4)))
            rowCount += 1
        }
        statement = try connection.prepare("SELECT pk, project_pk, asset_pk FROM project_assets ORDER BY pk")
        while try statement.step() {
            projectAssets[statement.int64(1), default: []].append(
                StoredEntry(pk: statement.int64(0), key: id(assetIDs, statement, 2), value: 0))
            rowCount += 1
        }
        rowCount += domains.count + users.count + groups.count + roleMappings.count + assets.count + projects.count
        for table in ["users", "groups", "assets", "projects"] {
            maxPk[table] = try connection.queryInt("SELECT max(pk) FROM \(table)") ?? 0
        }
    }
}

/// Plans the writes that turn the stored rows into `workspace` (validated and normalized).
struct DiffPlanner {
    let stored: StoredRows
    let workspace: Workspace

    func plan() -> DiffPlan {
        var plan = DiffPlan()
        var unresolved = 0
        /// Counts a reference that does not resolve.
        func resolved<T>(_ value: T?) -> T? {
            if value == nil { unresolved += 1 }
            return value
        }
        planSettings(&plan)
        let userPks = planEntities(
            &plan, table: "users", ids: workspace.users.map(\.id), stored: stored.users.mapValues(\.pk),
            columns: ["id", "email", "origin", "role", "active"],
            values: { index in
                let user = workspace.users[index]
                return [.text(user.email), .text(user.origin.name), SQLValue(user.role?.name), SQLValue(user.active)]
            },
            changed: { index in
                let user = workspace.users[index]
                let row = StoredRows.UserRow(
                    email: user.email, origin: user.origin.name, role: user.role?.name, active: user.active)
                return stored.users[user.id]?.row != row
            })
        let groupPks = planEntities(
            &plan, table: "groups", ids: workspace.groups.map(\.id), stored: stored.groups.mapValues(\.pk),
            columns: ["id", "name", "source"],
            values: { index in [.text(workspace.groups[index].name), .text(workspace.groups[index].source.name)] },
            changed: { index in
                let group = workspace.groups[index]
                guard let row = stored.groups[group.id] else { return true }
                return row.name != group.name || row.source != group.source.name
            })
        let assetPks = planEntities(
            &plan, table: "assets", ids: workspace.assets.map(\.id), stored: stored.assets.mapValues(\.pk),
            columns: ["id", "kind", "name"],
            values: { index in [.text(workspace.assets[index].kind.name), .text(workspace.assets[index].name)] },
            changed: { index in
                let asset = workspace.assets[index]
                guard let row = stored.assets[asset.id] else { return true }
                return row.kind != asset.kind.name || row.name != asset.name
            })
        let projectPks = planEntities(
            &plan, table: "projects", ids: workspace.projects.map(\.id), stored: stored.projects.mapValues(\.pk),
            columns: ["id", "owner_pk", "workspace_access", "public_access"],
            values: { index in
                let project = workspace.projects[index]
                return [
                    SQLValue(project.owner.flatMap { resolved(userPks[$0]) }), .text(project.workspaceAccess.name),
                    .text(project.publicAccess.name),
                ]
            },
            changed: { index in
                let project = workspace.projects[index]
                let row = StoredRows.ProjectRow(
                    owner: project.owner.flatMap { userPks[$0] }, workspaceAccess: project.workspaceAccess.name,
                    publicAccess: project.publicAccess.name)
                return stored.projects[project.id]?.row != row
            })

        // Lists. A parent that is deleted takes its rows with it (the cascade). Entries
        // are compared by id; only an inserted one is looked up.
        for (index, group) in workspace.groups.enumerated() {
            let pk = groupPks[index]
            planList(
                &plan, table: "group_members", stored: stored.members[pk] ?? [],
                wanted: group.members.map { (key: $0, value: 0) },
                insert: { user, _ in userPks[user].map { ("group_pk, user_pk", [.integer(pk), .integer($0)]) } })
        }
        planList(
            &plan, table: "role_mappings", stored: stored.roleMappings,
            wanted: workspace.settings.directorySync.roleMappings.map { (key: $0.group, value: $0.role.name) },
            update: "role",
            insert: { group, role in groupPks[group].map { ("group_pk, role", [.integer($0), .text(role)]) } })
        for (index, asset) in workspace.assets.enumerated() {
            let pk = assetPks[index]
            planList(
                &plan, table: "asset_groups", stored: stored.assetGroups[pk] ?? [],
                wanted: asset.groups.map { (key: $0, value: 0) },
                insert: { id, _ in
                    if BuiltinGroup(name: id) != nil { return ("asset_pk, builtin", [.integer(pk), .text(id)]) }
                    return groupPks[id].map { ("asset_pk, group_pk", [.integer(pk), .integer($0)]) }
                })
        }
        for (index, project) in workspace.projects.enumerated() {
            let pk = projectPks[index]
            planList(
                &plan, table: "project_grants", stored: stored.grants[pk] ?? [],
                wanted: project.grants.map { (key: $0.target, value: $0.level.name) }, update: "level",
                insert: { target, level in
                    switch target {
                    case .user(let user):
                        userPks[user].map { ("project_pk, user_pk, level", [.integer(pk), .integer($0), .text(level)]) }
                    case .group(let group):
                        groupPks[group].map { ("project_pk, group_pk, level", [.integer(pk), .integer($0), .text(level)]) }
                    }
                })
            planList(
                &plan, table: "project_assets", stored: stored.projectAssets[pk] ?? [],
                wanted: project.assets.map { (key: $0, value: 0) },
                insert: { asset, _ in assetPks[asset].map { ("project_pk, asset_pk", [.integer(pk), .integer($0)]) } })
        }
        plan.unresolvedReferences += unresolved
        return plan
    }

    private func planSettings(_ plan: inout DiffPlan) {
        let settings = workspace.settings
        let wanted: [SQLValue] = [
            .text(settings.plan.name), .text(settings.defaultDomainRole.name), SQLValue(settings.viewerSeatsPaid),
            SQLValue(settings.directorySync.enabled), SQLValue(settings.directorySync.roleSync),
        ]
        if let current = stored.settings {
            if current.map(Key.init) != wanted.map(Key.init) {
                plan.settings.append(PlannedWrite(sql: """
                    UPDATE workspace SET plan = ?, default_domain_role = ?, viewer_seats_paid = ?,
                        directory_sync_enabled = ?, directory_role_sync = ? WHERE id = 1
                    """, values: wanted))
            }
        } else {
            plan.settings.append(PlannedWrite(sql: """
                INSERT INTO workspace (id, plan, default_domain_role, viewer_seats_paid, directory_sync_enabled,
                    directory_role_sync) VALUES (1, ?, ?, ?, ?, ?)
                """, values: wanted))
        }
        planList(
            &plan, table: "allowed_domains", stored: stored.domains,
            wanted: settings.allowedDomains.map { (key: $0, value: 0) },
            insert: { domain, _ in ("domain", [.text(domain)]) as (columns: String, values: [SQLValue])? })
    }

    /// Inserts, updates and deletes of one entity table; returns the pk of every wanted
    /// entity (new ones numbered after the largest stored pk), by index and by id.
    private func planEntities(
        _ plan: inout DiffPlan, table: String, ids: [String], stored: [String: Int64], columns: [String],
        values: (Int) -> [SQLValue], changed: (Int) -> Bool
    ) -> EntityPks {
        var pks = EntityPks()
        var next = self.stored.maxPk[table] ?? 0
        let insert = "INSERT INTO \(table) (pk, \(columns.joined(separator: ", "))) VALUES (?, ?"
            + String(repeating: ", ?", count: columns.count - 1) + ")"
        let update = "UPDATE \(table) SET " + columns.dropFirst().map { "\($0) = ?" }.joined(separator: ", ")
            + " WHERE pk = ?"
        for (index, id) in ids.enumerated() {
            if let pk = stored[id] {
                pks.append(id, pk)
                if changed(index) { plan.updates.append(PlannedWrite(sql: update, values: values(index) + [.integer(pk)])) }
            } else {
                next += 1
                pks.append(id, next)
                plan.insertEntities.append(PlannedWrite(sql: insert, values: [.integer(next), .text(id)] + values(index)))
            }
        }
        let wanted = Set(ids)
        for (id, pk) in stored.sorted(by: { $0.value < $1.value }) where !wanted.contains(id) {
            plan.deleteEntities.append(PlannedWrite(sql: "DELETE FROM \(table) WHERE pk = ?", values: [.integer(pk)]))
        }
        return pks
    }

    private func planList<ListKey: Equatable, Value: Equatable>(
        _ plan: inout DiffPlan, table: String, stored: [StoredEntry<ListKey, Value>],
        wanted: [(key: ListKey, value: Value)], update column: String? = nil,
        insert row: (ListKey, Value) -> (columns: String, values: [SQLValue])?
    ) {
        var inserts: [PlannedWrite] = []
        var unresolved = 0
        diffList(
            stored: stored, wanted: wanted,
            update: { pk, value in
                guard let column, let text = value as? String else { return }
                plan.updates.append(
                    PlannedWrite(sql: "UPDATE \(table) SET \(column) = ? WHERE pk = ?", values: [.text(text), .integer(pk)]))
            },
            delete: { pk in
                plan.deleteLinks.append(PlannedWrite(sql: "DELETE FROM \(table) WHERE pk = ?", values: [.integer(pk)]))
            },
            insert: { key, value in
                guard let (columns, values) = row(key, value) else {
                    unresolved += 1
                    return
                }
                let placeholders = Array(repeating: "?", count: values.count).joined(separator: ", ")
                inserts.append(
                    PlannedWrite(sql: "INSERT INTO \(table) (\(columns)) VALUES (\(placeholders))", values: values))
            })
        plan.insertLinks += inserts
        plan.unresolvedReferences += unresolved
    }

    /// A comparable form of an SQL value.
    private enum Key: Equatable {
        case integer(Int64)
        case text(String)
        case null

        init(_ value: SQLValue) {
            switch value {
            case .integer(let value): self = .integer(value)
            case .text(let value): self = .text(value)
            case .null: self = .null
            }
        }
    }
}

/// The pks of the wanted entities, by array index and by id.
struct EntityPks {
    private var byIndex: [Int64] = []
    private var byID: [String: Int64] = [:]

    mutating func append(_ id: String, _ pk: Int64) {
        byIndex.append(pk)
        byID[id] = pk
    }

    subscript(index: Int) -> Int64 { byIndex[index] }
    subscript(id: String) -> Int64? { byID[id] }
}

extension DiffPlan {
    /// Runs the plan's writes in order (inside the caller's transaction), one prepared
    /// statement per distinct SQL text.
    func execute(on connection: Connection) throws(StoreError) {
        var statements: [String: Statement] = [:]
        for phase in phases {
            for write in phase {
                let statement: Statement
                if let cached = statements[write.sql] {
                    statement = cached
                } else {
                    statement = try connection.prepare(write.sql)
                    statements[write.sql] = statement
                }
                for (offset, value) in write.values.enumerated() {
                    let index = Int32(offset + 1)
                    switch value {
                    case .integer(let value): try statement.bind(value, at: index)
                    case .text(let value): try statement.bind(value, at: index)
                    case .null: try statement.bindNull(at: index)
                    }
                }
                try statement.run()
            }
        }
    }
}

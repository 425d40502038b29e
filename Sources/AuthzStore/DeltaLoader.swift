// Delta reloads (issue 13), the store's side: in ONE read transaction, the changes logged
// since the snapshot in service and the current state of the rows they touched, applied to
// that snapshot by the engine (AuthzEngine/SnapshotDelta.swift). Whatever the delta cannot
// express is answered with the reason to load everything instead.

public import AuthzEngine
import CSQLite

/// A database file's identity (device and inode): a replaced file is another identity.
public struct DatabaseFileIdentity: Sendable, Equatable {
    public var device: UInt64
    public var inode: UInt64

    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    /// The identity of the file at `path` now (following symlinks), or nil.
    public static func of(_ path: String) -> DatabaseFileIdentity? {
        if case .file(let device, let inode) = FileStatus(path: path) {
            return DatabaseFileIdentity(device: device, inode: inode)
        }
        return nil
    }
}

/// The outcome of `SnapshotLoader.loadDelta`.
public enum DeltaLoad: Sendable {
    /// The new snapshot, built from the base plus `changes` logged row changes.
    case applied(Snapshot, changes: Int)
    /// The delta path does not apply: load everything. `reason` says why (for the log).
    case needsFull(reason: String)
}

extension SnapshotLoader {
    /// The default largest number of logged row changes applied as a delta; more loads
    /// everything.
    public static let defaultDeltaMaxChanges = 10_000

    /// The snapshot of the database's current version built from `base` (loaded from the file
    /// `baseFile`) plus the changes since `base.version`, or why a full load is needed: the
    /// file was replaced, the change log does not reach back to `base.version` (pruned, or
    /// restarted by a bulk replace), the database is older than `base`, more than `maxChanges`
    /// row changes, an entity added or removed, a settings change (plan, domains, default
    /// domain role, directory sync, role mappings), or a change the engine refuses.
    public static func loadDelta(
        path: String, base: Snapshot, baseFile: DatabaseFileIdentity?, maxChanges: Int = defaultDeltaMaxChanges
    ) throws(StoreError) -> DeltaLoad {
        try loadDelta(connection: openReadOnly(path), path: path, base: base, baseFile: baseFile, maxChanges: maxChanges)
    }

    /// `loadDelta(path:base:baseFile:maxChanges:)` on an open read-only connection to `path`.
    static func loadDelta(
        connection: Connection, path: String, base: Snapshot, baseFile: DatabaseFileIdentity?, maxChanges: Int
    ) throws(StoreError) -> DeltaLoad {
        guard let baseFile, DatabaseFileIdentity.of(path) == baseFile else {
            return .needsFull(reason: "the database file was replaced")
        }
        return try connection.transaction(.deferred) { () throws(StoreError) -> DeltaLoad in
            try connection.requireCurrentSchema()
            // Each row change bumps the version by one: a gap wider than the limit is too many
            // changes, known before reading them.
            let version = try connection.snapshotVersion()
            if version > base.version, version - base.version > UInt64(max(0, maxChanges)) {
                return .needsFull(reason: "\(version - base.version) versions behind, more than \(maxChanges) row changes")
            }
            guard let changes = try connection.changes(since: base.version) else {
                return .needsFull(reason: "the change log does not reach back to version \(base.version)")
            }
            guard changes.changes.count <= maxChanges else {
                return .needsFull(reason: "\(changes.changes.count) row changes, more than \(maxChanges)")
            }
            let reader = DeltaReader(connection: connection)
            let delta: SnapshotDelta
            switch try reader.read(changes.changes) {
            case .delta(let read): delta = read
            case .full(let reason): return .needsFull(reason: reason)
            }
            do throws(DeltaRefused) {
                return .applied(try base.applying(delta, version: changes.version), changes: changes.changes.count)
            } catch {
                return .needsFull(reason: error.description)
            }
        }
    }
}

/// Reads the current state of what a list of changes touched.
struct DeltaReader {
    let connection: Connection

    enum Outcome {
        case delta(SnapshotDelta)
        case full(String)
    }

    func read(_ changes: [Change]) throws(StoreError) -> Outcome {
        var users = Set<String>()
        var assets = Set<String>()
        var projects = Set<String>()
        for change in changes {
            switch change.table {
            case "users", "groups", "assets", "projects":
                guard change.operation == .update else {
                    return .full("an entity was added or removed (\(change.table) \(change.key) \(change.operation.rawValue))")
                }
                switch change.table {
                case "users": users.insert(change.key)
                case "projects": projects.insert(change.key)
                default: break  // a group's name or source, an asset's kind or name: no decision reads them
                }
            case "group_members":
                // 'group/user'
                guard let user = Self.part(change.key, 1) else { return .full("unexpected change-log key '\(change.key)'") }
                users.insert(user)
            case "asset_groups":
                guard let asset = Self.part(change.key, 0) else { return .full("unexpected change-log key '\(change.key)'") }
                assets.insert(asset)
            case "project_grants", "project_assets":
                guard let project = Self.part(change.key, 0) else { return .full("unexpected change-log key '\(change.key)'") }
                projects.insert(project)
            default:
                // workspace, allowed_domains, role_mappings: every role may change.
                return .full("a workspace setting changed (\(change.table))")
            }
        }
        var delta = SnapshotDelta()
        if !users.isEmpty {
            let row = try connection.prepare("SELECT pk, email, origin, role, active FROM users WHERE id = ?")
            let groups = try connection.prepare(
                "SELECT g.id FROM group_members m JOIN groups g ON g.pk = m.group_pk WHERE m.user_pk = ?")
            let origins = EnumNames<Origin>(), roles = EnumNames<Role>()
            for id in users.sorted() {
                row.reset()
                try row.bind(id, at: 1)
                guard try row.step() else { return .full("user '\(id)' is gone") }
                let pk = row.int64(0)
                guard let email = row.text(1), let origin = row.withTextBytes(2, { origins.decode($0) }) else {
                    throw corrupt("users", pk)
                }
                var role: Role? = nil
                if !row.isNull(3) {
                    guard let decoded = row.withTextBytes(3, { roles.decode($0) }) else { throw corrupt("users", pk) }
                    role = decoded
                }
                let active = row.int64(4) != 0
                groups.reset()
                try groups.bind(pk, at: 1)
                var groupIds: [String] = []
                while try groups.step() {
                    guard let group = groups.text(0) else { throw corrupt("groups", pk) }
                    groupIds.append(group)
                }
                delta.users.append(
                    SnapshotDelta.UserState(
                        user: User(id: id, email: email, origin: origin, role: role, active: active), groups: groupIds))
            }
        }
        if !assets.isEmpty {
            let row = try connection.prepare("SELECT pk FROM assets WHERE id = ?")
            let groups = try connection.prepare("""
                SELECT g.id, ag.builtin FROM asset_groups ag LEFT JOIN groups g ON g.pk = ag.group_pk
                WHERE ag.asset_pk = ?
                """)
            for id in assets.sorted() {
                row.reset()
                try row.bind(id, at: 1)
                guard try row.step() else { return .full("asset '\(id)' is gone") }
                let pk = row.int64(0)
                groups.reset()
                try groups.bind(pk, at: 1)
                var names: [String] = []
                while try groups.step() {
                    guard let name = groups.text(0) ?? groups.text(1) else { throw corrupt("asset_groups", pk) }
                    names.append(name)
                }
                // Kind and name do not matter to the delta.
                delta.assets.append(Asset(id: id, kind: .dataConnection, name: "", groups: names))
            }
        }
        if !projects.isEmpty {
            let row = try connection.prepare("""
                SELECT p.pk, u.id, p.owner_pk, p.workspace_access, p.public_access
                FROM projects p LEFT JOIN users u ON u.pk = p.owner_pk WHERE p.id = ?
                """)
            let grants = try connection.prepare("""
                SELECT u.id, g.id, pg.level FROM project_grants pg
                LEFT JOIN users u ON u.pk = pg.user_pk LEFT JOIN groups g ON g.pk = pg.group_pk
                WHERE pg.project_pk = ?
                """)
            let projectAssets = try connection.prepare(
                "SELECT a.id FROM project_assets pa JOIN assets a ON a.pk = pa.asset_pk WHERE pa.project_pk = ?")
            let levels = EnumNames<Level>()
            for id in projects.sorted() {
                row.reset()
                try row.bind(id, at: 1)
                guard try row.step() else { return .full("project '\(id)' is gone") }
                let pk = row.int64(0)
                if row.isNull(1), !row.isNull(2) { throw corrupt("projects", pk) }
                guard let workspaceAccess = row.withTextBytes(3, { levels.decode($0) }),
                    let publicAccess = row.withTextBytes(4, { levels.decode($0) })
                else { throw corrupt("projects", pk) }
                var project = Project(id: id, owner: row.text(1), workspaceAccess: workspaceAccess, publicAccess: publicAccess)
                grants.reset()
                try grants.bind(pk, at: 1)
                while try grants.step() {
                    guard let level = grants.withTextBytes(2, { levels.decode($0) }) else { throw corrupt("project_grants", pk) }
                    if let user = grants.text(0) {
                        project.grants.append(.user(user, level))
                    } else if let group = grants.text(1) {
                        project.grants.append(.group(group, level))
                    } else {
                        throw corrupt("project_grants", pk)
                    }
                }
                projectAssets.reset()
                try projectAssets.bind(pk, at: 1)
                while try projectAssets.step() {
                    guard let asset = projectAssets.text(0) else { throw corrupt("project_assets", pk) }
                    project.assets.append(asset)
                }
                delta.projects.append(project)
            }
        }
        return .delta(delta)
    }

    /// Part `index` of a '/'-separated change-log key.
    static func part(_ key: String, _ index: Int) -> String? {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2, index < parts.count else { return nil }
        return String(parts[index])
    }

    private func corrupt(_ table: String, _ pk: Int64) -> StoreError {
        StoreError(code: .corrupt, message: "\(connection.path): \(table) row for \(pk) has NULL or unknown values")
    }
}

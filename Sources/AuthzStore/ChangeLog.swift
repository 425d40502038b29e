// The change log (schema version 2, see Schema.swift): what changed between two snapshot
// versions, for a reader that wants to apply a delta instead of loading everything, and its
// retention (pruning by count of versions and by age).

/// What happened to a row.
public enum ChangeOperation: String, Sendable, Hashable, CaseIterable {
    case insert
    case update
    case delete
}

/// One logged row change.
public struct Change: Sendable, Hashable, CustomStringConvertible {
    /// The snapshot version this change made (each row change bumps the version by one).
    public var version: UInt64
    /// The data table: `workspace`, `allowed_domains`, `users`, `groups`, `group_members`,
    /// `role_mappings`, `assets`, `asset_groups`, `projects`, `project_grants`,
    /// `project_assets`.
    public var table: String
    /// The row's external key (Schema.swift): an id, a domain, `'workspace'`, or for a link
    /// row the parent's id and the target, separated by '/' (`g-data/u-ada`,
    /// `p-revenue/user/u-cy`, `p-revenue/group/g-data`, `a-key/public`, `p-revenue/a-hr`).
    public var key: String
    public var operation: ChangeOperation

    public init(version: UInt64, table: String, key: String, operation: ChangeOperation) {
        self.version = version
        self.table = table
        self.key = key
        self.operation = operation
    }

    /// "12 users u-ada update".
    public var description: String { "\(version) \(table) \(key) \(operation.rawValue)" }
}

/// The changes that lead from snapshot version `since` to `version`.
public struct ChangeSet: Sendable, Equatable {
    /// The version the reader has.
    public var since: UInt64
    /// The version the changes lead to (`meta.version` when they were read).
    public var version: UInt64
    /// Every logged change after `since`, in the order they were made (by version).
    public var changes: [Change]

    public init(since: UInt64, version: UInt64, changes: [Change]) {
        self.since = since
        self.version = version
        self.changes = changes
    }

    /// The keys that changed in each table (each key once, whatever happened to it): what a
    /// reloader must read again (a key that is gone from the table was deleted).
    public var keysByTable: [String: Set<String>] {
        var result: [String: Set<String>] = [:]
        for change in changes { result[change.table, default: []].insert(change.key) }
        return result
    }
}

/// The state of the change log.
public struct ChangeLogStatus: Sendable, Equatable {
    /// The current snapshot version.
    public var version: UInt64
    /// The log holds every change after this version: `changes(since: a)` answers for every
    /// `a` from `floor` to `version`.
    public var floor: UInt64
    /// Rows in the log.
    public var rows: Int64
    /// Retention: changes more than this many versions behind `version` are pruned (nil: no
    /// limit by count).
    public var keepVersions: Int64?
    /// Retention: changes older than this many milliseconds are pruned (nil: no limit by
    /// age).
    public var keepMilliseconds: Int64?
}

/// A retention limit to set: leave it as it is, remove it, or set it.
public enum RetentionSetting: Sendable, Equatable {
    case unchanged
    case unlimited
    case limit(Int64)
}

extension Connection {
    /// The changes after `since` (nil when the log does not reach back that far, or when
    /// `since` is newer than the database: load everything). Run inside a transaction.
    func changes(since: UInt64) throws(StoreError) -> ChangeSet? {
        let meta = try prepare("SELECT version, log_floor FROM meta WHERE id = 1")
        guard try meta.step() else {
            throw StoreError(code: .corrupt, message: "\(path): the meta row (snapshot version) is missing")
        }
        let version = try Self.snapshotVersion(meta, column: 0, path: path)
        let floor = UInt64(max(0, meta.int64(1)))
        guard since >= floor, since <= version else { return nil }
        var changes: [Change] = []
        if since < version {
            let query = try prepare(
                "SELECT version, tbl, key, op FROM changes WHERE version > ? ORDER BY version, seq")
            try query.bind(Int64(clamping: since), at: 1)
            while try query.step() {
                guard let table = query.text(1), let key = query.text(2),
                    let operation = query.text(3).flatMap(ChangeOperation.init(rawValue:))
                else {
                    throw StoreError(code: .corrupt, message: "\(path): a row of the change log has NULL or unknown values")
                }
                changes.append(
                    Change(version: UInt64(max(0, query.int64(0))), table: table, key: key, operation: operation))
            }
        }
        return ChangeSet(since: since, version: version, changes: changes)
    }

    func changeLogStatus() throws(StoreError) -> ChangeLogStatus {
        let statement = try prepare("""
            SELECT version, log_floor, (SELECT count(*) FROM changes), log_keep_versions, log_keep_ms
            FROM meta WHERE id = 1
            """)
        guard try statement.step() else {
            throw StoreError(code: .corrupt, message: "\(path): the meta row (snapshot version) is missing")
        }
        return ChangeLogStatus(
            version: try Self.snapshotVersion(statement, column: 0, path: path),
            floor: UInt64(max(0, statement.int64(1))),
            rows: statement.int64(2),
            keepVersions: statement.isNull(3) ? nil : statement.int64(3),
            keepMilliseconds: statement.isNull(4) ? nil : statement.int64(4))
    }

    func setChangeLogRetention(keepVersions: RetentionSetting, keepMilliseconds: RetentionSetting) throws(StoreError) {
        for (column, setting) in [("log_keep_versions", keepVersions), ("log_keep_ms", keepMilliseconds)] {
            switch setting {
            case .unchanged: break
            case .unlimited: try exec("UPDATE meta SET \(column) = NULL WHERE id = 1")
            case .limit(let value):
                guard value >= 0 else {
                    throw StoreError(code: .constraint, message: "\(column) must not be negative (got \(value))")
                }
                try exec("UPDATE meta SET \(column) = \(value) WHERE id = 1")
            }
        }
    }

    /// Deletes the changes the retention settings no longer keep (whole versions only) and
    /// raises `log_floor` to the newest version deleted. Run inside a write transaction.
    /// Returns the rows deleted.
    @discardableResult
    func pruneChangeLog(nowMilliseconds: Int64? = nil) throws(StoreError) -> Int64 {
        let status = try changeLogStatus()
        var cut = Int64(clamping: status.floor)
        if let keep = status.keepVersions {
            cut = max(cut, Int64(clamping: status.version) - keep)
        }
        if let keepMs = status.keepMilliseconds {
            var now = nowMilliseconds ?? 0
            if nowMilliseconds == nil { now = try queryInt("SELECT \(Schema.nowMs)") ?? 0 }
            let statement = try prepare("SELECT max(version) FROM changes WHERE at_unix_ms < ?")
            try statement.bind(now - keepMs, at: 1)
            if try statement.step(), !statement.isNull(0) { cut = max(cut, statement.int64(0)) }
        }
        let before = status.rows
        let delete = try prepare("DELETE FROM changes WHERE version <= ?")
        try delete.bind(cut, at: 1)
        try delete.run()
        let floor = try prepare("UPDATE meta SET log_floor = ? WHERE id = 1 AND log_floor < ?")
        try floor.bind(cut, at: 1)
        try floor.bind(cut, at: 2)
        try floor.run()
        return before - (try queryInt("SELECT count(*) FROM changes") ?? 0)
    }

    /// After a write that was not logged (a bulk replace): the log starts again at the
    /// current version.
    func restartChangeLog() throws(StoreError) {
        try exec("DELETE FROM changes")
        try exec("UPDATE meta SET log_floor = version WHERE id = 1")
    }
}

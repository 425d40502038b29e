// The writer side of the store: opens (creating and migrating) a database, imports a
// whole workspace in one transaction and exports it again.

public import AuthzEngine
import AuthzDocument
import CSQLite

/// A read-write workspace database: one connection, used from one thread at a time.
///
/// The database runs in WAL mode, so a `SnapshotLoader` in another process (or thread)
/// reads a consistent snapshot while this store writes, and is never blocked by it.
public final class WorkspaceStore {
    /// The page cache of an import, in KiB (SQLite's negative cache_size): 256 MiB.
    private let importCacheSize = -262_144

    private let connection: Connection

    /// The schema version of the open database (always the newest this build supports).
    public let schemaVersion: Int

    /// The newest schema version this build reads and writes.
    public static var supportedSchemaVersion: Int { Schema.latestVersion }

    /// The SQL of the migration to schema `version` (for tests and tools that need a
    /// database of an older schema), or nil.
    public static func migrationSQL(version: Int) -> String? {
        Schema.migrations.first { $0.version == version }?.sql
    }

    /// The path the store was opened with.
    public var path: String { connection.path }

    private init(connection: Connection, schemaVersion: Int) {
        self.connection = connection
        self.schemaVersion = schemaVersion
    }

    /// Opens the database at `path`, creating the file when it is missing and `create` is
    /// true, and migrates its schema forward to the newest version (each step in its own
    /// transaction). A 0-byte file is a new, empty database.
    ///
    /// Fails with `.notFound` (missing and `create` false), `.schemaTooNew` (written by a
    /// newer build; nothing is changed), `.notAWorkspaceStore` (another application's
    /// database), `.corrupt` (not an SQLite file), `.io`, `.busy`.
    public static func open(path: String, create: Bool = true) throws(StoreError) -> WorkspaceStore {
        guard !path.isEmpty else {
            throw StoreError(code: .notFound, message: "the database path is empty")
        }
        let status = FileStatus(path: path)
        if status == .missing, !create { throw StoreError(code: .notFound, message: "no database at \(path)") }
        try status.requireNotOther(path)
        let flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0)
        let connection = try Connection.open(path: path, flags: flags)
        do {
            // Identity and version first: a database this build must not touch is left
            // exactly as it was (no WAL switch, no migration).
            _ = try connection.checkStoreIdentity()
            try enableWAL(connection)
            try migrate(connection)
        } catch {
            throw error.prefixed("cannot open the workspace store")
        }
        return WorkspaceStore(connection: connection, schemaVersion: Schema.latestVersion)
    }

    private static func enableWAL(_ connection: Connection) throws(StoreError) {
        let mode = try connection.queryText("PRAGMA journal_mode = WAL")?.lowercased()
        // An in-memory database reports "memory"; a file must be in WAL mode so readers
        // never see a half-written import and never block the writer.
        guard mode == "wal" || connection.path == ":memory:" else {
            throw StoreError(
                code: .sqlite,
                message: "\(connection.path): cannot switch to WAL journal mode (it is \(mode ?? "unknown"))")
        }
        // Keep the WAL file from staying at the size of the largest import.
        try connection.exec("PRAGMA journal_size_limit = \(64 << 20)")
    }

    /// Runs every migration newer than the database, in order, each in its own
    /// IMMEDIATE transaction that re-reads `user_version` (another process may have
    /// migrated meanwhile).
    static func migrate(_ connection: Connection) throws(StoreError) {
        // Common case first, without taking the write lock: nothing to do.
        let initial = try connection.userVersion()
        for migration in Schema.migrations where migration.version > initial {
            try connection.transaction(.immediate) { () throws(StoreError) in
                let current = try connection.checkStoreIdentity()
                guard current < migration.version else { return }
                guard current == migration.version - 1 else {
                    throw StoreError(
                        code: .sqlite,
                        message: "cannot migrate from schema version \(current) to \(migration.version)")
                }
                do throws(StoreError) {
                    try connection.exec(migration.sql)
                    try connection.exec("PRAGMA user_version = \(migration.version)")
                } catch {
                    throw error.prefixed("migration to schema version \(migration.version) (\(migration.summary)) failed")
                }
            }
        }
    }

    /// The current snapshot version (0 before the first import).
    public func snapshotVersion() throws(StoreError) -> UInt64 {
        try connection.snapshotVersion()
    }

    /// How `importWorkspace` writes.
    public enum ImportMode: Sendable, Equatable {
        /// The diff, unless the store has no workspace yet or the diff is large (more than
        /// `automaticReplaceThreshold` rows and more than a quarter of the stored rows):
        /// then the bulk replace, which is several times faster per row.
        case automatic
        /// Only the rows that differ, with the row triggers in place: the version and the
        /// change log grow by the rows changed (cascaded deletes included).
        case diff
        /// Delete everything and insert the workspace with the row triggers suspended: the
        /// version goes up by one and the change log starts again at the new version (a
        /// reader further behind loads everything).
        case replace
    }

    /// Above this many changed rows (and a quarter of the stored rows) `.automatic` replaces.
    public static let automaticReplaceThreshold = 50_000

    /// What an import did.
    public struct ImportSummary: Sendable, Equatable {
        /// The snapshot version before and after (equal when nothing changed).
        public var previousVersion: UInt64
        public var version: UInt64
        /// Whether the import replaced everything (`.replace`) or wrote the diff.
        public var replaced: Bool
        /// Row writes issued (the diff's inserts, updates and deletes; 0 for a replace). The
        /// version grows by these plus the link rows that cascaded from deleted entities.
        public var rowsWritten: Int
        /// How long each phase took, in order (validate, read, plan, write, commit), in
        /// seconds.
        public var phases: [Phase] = []
    }

    /// One timed phase of an import.
    public struct Phase: Sendable, Equatable {
        public var name: String
        public var seconds: Double
    }

    /// Makes the stored workspace equal to `workspace` and returns the new snapshot version
    /// (`importChanges(_:mode: .automatic).version`).
    @discardableResult
    public func importWorkspace(_ workspace: Workspace) throws(StoreError) -> UInt64 {
        try importChanges(workspace, mode: .automatic).version
    }

    /// Makes the stored workspace equal to `workspace`.
    ///
    /// The workspace is validated first (`WorkspaceDocument.validate`); any issue fails with
    /// `.invalidWorkspace` listing every issue, before the database is touched. Then, in
    /// ONE transaction, either only the rows that differ are inserted, updated and deleted
    /// (matched by external id; WorkspaceDiff.swift), or (`.replace`) every row is deleted
    /// and the workspace inserted (the store's row triggers and secondary indexes are
    /// suspended meanwhile, see Schema.swift). Any failure rolls the transaction back,
    /// leaving the database (and its version) exactly as it was. A diff that changes
    /// nothing writes nothing: the version stays.
    ///
    /// A repeated entry in an id list (members, asset groups, project assets, domains) is
    /// stored once: the export gives back `WorkspaceDocument.normalized(workspace)`, except
    /// that after a diff import entities already stored keep their position (new ones come
    /// last).
    ///
    /// `validated`: the workspace is what `WorkspaceDocument.decode` returned, which has
    /// validated and normalized it already, so that (for a large workspace, noticeable)
    /// work is not done again. A reference to an unknown id still fails the import
    /// (`.constraint`).
    @discardableResult
    public func importChanges(_ workspace: Workspace, mode: ImportMode, validated: Bool = false) throws(StoreError)
        -> ImportSummary
    {
        let start = ContinuousClock.now
        var wanted = workspace
        if !validated {
            let issues = WorkspaceDocument.validate(workspace)
            guard issues.isEmpty else {
                throw StoreError(
                    code: .invalidWorkspace(issues),
                    message: "the workspace has \(issues.count) problem\(issues.count == 1 ? "" : "s"); nothing was imported")
            }
            wanted = WorkspaceDocument.normalized(workspace)
        }
        var summary = try importChanges(mode: mode) { () throws(StoreError) in wanted }
        summary.phases.insert(Phase(name: "validate", seconds: Self.seconds(ContinuousClock.now - start)), at: 0)
        return summary
    }

    /// `importChanges(_:mode:validated: true)` for a workspace that is still being decoded:
    /// `workspace` is called inside the write transaction once the stored rows have been
    /// read, so a caller can decode the document on another thread meanwhile (the write
    /// lock is held while it waits). It must return what `WorkspaceDocument.decode`
    /// returns (validated and normalized); an error it throws rolls back and is rethrown.
    public func importChanges(mode: ImportMode, workspace: () throws(StoreError) -> Workspace) throws(StoreError)
        -> ImportSummary
    {
        let clock = ContinuousClock()
        var phases: [Phase] = []
        var phaseStart = clock.now
        func phase(_ name: String) {
            let now = clock.now
            phases.append(Phase(name: name, seconds: Self.seconds(now - phaseStart)))
            phaseStart = now
        }
        let connection = self.connection
        // A large import touches every page: keep them in memory instead of spilling
        // half-written pages to the WAL and reading them back.
        let cacheSize = try connection.queryInt("PRAGMA cache_size") ?? -2_000
        try connection.exec("PRAGMA cache_size = \(importCacheSize)")
        defer { try? connection.exec("PRAGMA cache_size = \(cacheSize)") }
        do {
            var summary = try connection.transaction(.immediate) { () throws(StoreError) -> ImportSummary in
                // Another process may have migrated the file past this build since open.
                try connection.requireCurrentSchema()
                let before = try connection.snapshotVersion()
                let stored = mode == .replace ? nil : try StoredRows(connection)
                phase("read stored rows")
                let wanted = try workspace()
                phase("wait for the workspace")
                if let stored, mode == .diff || stored.settings != nil {
                    let plan = DiffPlanner(stored: stored, workspace: wanted).plan()
                    phase("plan")
                    guard plan.unresolvedReferences == 0 else {
                        throw StoreError(
                            code: .constraint,
                            message: "the workspace has \(plan.unresolvedReferences) reference(s) to ids it does not define (validate it first)")
                    }
                    if mode == .diff || plan.count <= Self.automaticReplaceThreshold || plan.count * 4 <= stored.rowCount {
                        try plan.execute(on: connection)
                        try connection.pruneChangeLog()
                        let after = try connection.snapshotVersion()
                        phase("write")
                        return ImportSummary(
                            previousVersion: before, version: after, replaced: false, rowsWritten: plan.count)
                    }
                }
                let suspended = try connection.dropSchemaObjects(named: Schema.importSuspended)
                for table in Schema.dataTables {
                    try connection.exec("DELETE FROM \(table)")
                }
                try WorkspaceWriter(connection: connection).insert(wanted)
                try connection.recreate(suspended)
                try connection.exec("UPDATE meta SET version = version + 1 WHERE id = 1")
                let after = try connection.snapshotVersion()
                guard after > before else {
                    throw StoreError(code: .corrupt, message: "the snapshot version did not increase (\(before) → \(after))")
                }
                try connection.restartChangeLog()
                phase("replace")
                return ImportSummary(previousVersion: before, version: after, replaced: true, rowsWritten: 0)
            }
            phase("commit")
            summary.phases = phases
            return summary
        } catch {
            throw error.prefixed("import failed, nothing was changed")
        }
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }

    // MARK: Operations

    /// What `apply` did.
    public struct ApplySummary: Sendable, Equatable {
        public var previousVersion: UInt64
        /// The new snapshot version (the previous one when no operation changed anything).
        public var version: UInt64
        /// Operations applied.
        public var operations: Int
    }

    /// Applies `operations` in order in ONE transaction and returns the new version.
    ///
    /// Each operation is checked against the state the ones before it left, with the
    /// document's rules (OperationApplier.swift); if any has a problem, the transaction is
    /// rolled back and the call fails with `.invalidOperations`, listing every problem with
    /// its line. `issues` (problems found while reading the lines, e.g. by
    /// `OperationReader`) are reported together with those and also make it fail; the
    /// operations are still checked, so that every problem is reported at once. Fails with
    /// `.notInitialized` before the first import. The version grows by the rows changed.
    @discardableResult
    public func apply(_ operations: [NumberedOperation], issues: [OperationIssue] = []) throws(StoreError) -> ApplySummary {
        let connection = self.connection
        do {
            return try connection.transaction(.immediate) { () throws(StoreError) -> ApplySummary in
                try connection.requireCurrentSchema()
                guard try connection.queryInt("SELECT count(*) FROM workspace") == 1 else {
                    throw StoreError(code: .notInitialized, message: "\(connection.path): no workspace has been imported yet")
                }
                let before = try connection.snapshotVersion()
                var applier = OperationApplier(connection: connection)
                for operation in operations { try applier.apply(operation) }
                // By line; within a line in the order found.
                let all = (issues + applier.issues).enumerated()
                    .sorted { ($0.element.line, $0.offset) < ($1.element.line, $1.offset) }.map(\.element)
                guard all.isEmpty else {
                    throw StoreError(
                        code: .invalidOperations(all),
                        message: "\(all.count) problem\(all.count == 1 ? "" : "s") in the operations; nothing was changed")
                }
                try connection.pruneChangeLog()
                return ApplySummary(
                    previousVersion: before, version: try connection.snapshotVersion(), operations: operations.count)
            }
        } catch {
            throw error.prefixed("apply failed, nothing was changed")
        }
    }

    // MARK: The change log

    /// The changes after snapshot version `since`, or nil when the log does not reach back
    /// that far (`since` is below the log's floor, or newer than the database): then load
    /// everything. One read transaction; an indexed range query.
    public func changes(since: UInt64) throws(StoreError) -> ChangeSet? {
        let connection = self.connection
        return try connection.transaction(.deferred) { () throws(StoreError) in
            try connection.requireCurrentSchema()
            return try connection.changes(since: since)
        }
    }

    /// The log's floor, size and retention settings.
    public func changeLogStatus() throws(StoreError) -> ChangeLogStatus {
        let connection = self.connection
        return try connection.transaction(.deferred) { () throws(StoreError) in
            try connection.requireCurrentSchema()
            return try connection.changeLogStatus()
        }
    }

    /// Sets the retention (kept in the database, `meta.log_keep_versions` and
    /// `meta.log_keep_ms`) and prunes at once. Returns the status afterwards.
    @discardableResult
    public func setChangeLogRetention(
        keepVersions: RetentionSetting = .unchanged, keepMilliseconds: RetentionSetting = .unchanged
    ) throws(StoreError) -> ChangeLogStatus {
        let connection = self.connection
        return try connection.transaction(.immediate) { () throws(StoreError) in
            try connection.requireCurrentSchema()
            try connection.setChangeLogRetention(keepVersions: keepVersions, keepMilliseconds: keepMilliseconds)
            try connection.pruneChangeLog()
            return try connection.changeLogStatus()
        }
    }

    /// Prunes the log by the retention settings (every write of the store does this too;
    /// hand edits do not). `nowMilliseconds` overrides the clock (for tests). Returns the
    /// rows deleted.
    @discardableResult
    public func pruneChangeLog(nowMilliseconds: Int64? = nil) throws(StoreError) -> Int64 {
        let connection = self.connection
        return try connection.transaction(.immediate) { () throws(StoreError) in
            try connection.requireCurrentSchema()
            return try connection.pruneChangeLog(nowMilliseconds: nowMilliseconds)
        }
    }

    /// Reads the whole stored workspace and its snapshot version in one read transaction.
    /// Lists come back in the order they were imported. `.notInitialized` before the first
    /// import.
    public func exportWorkspace() throws(StoreError) -> (workspace: Workspace, version: UInt64) {
        let connection = self.connection
        return try connection.transaction(.deferred) { () throws(StoreError) in
            try WorkspaceReader(connection: connection).read()
        }
    }
}

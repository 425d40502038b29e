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
        switch FileStatus(path: path) {
        case .file:
            break
        case .missing:
            guard create else { throw StoreError(code: .notFound, message: "no database at \(path)") }
        case .directory:
            throw StoreError(code: .io, message: "\(path) is a directory, not a database file")
        case .unavailable(let code, let message):
            throw StoreError(code: .io, message: "cannot access \(path): \(message) (errno \(code))")
        }
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

    /// Replaces the whole stored workspace with `workspace` and returns the new snapshot
    /// version.
    ///
    /// The workspace is validated first (`WorkspaceDocument.validate`); any issue fails with
    /// `.invalidWorkspace` listing every issue, before the database is touched. Then, in
    /// ONE transaction, every row is deleted and the workspace inserted (the store's row
    /// triggers and secondary indexes are suspended meanwhile, see Schema.swift); any
    /// failure rolls the transaction back, leaving the database (and its version) exactly
    /// as it was. The version goes up by exactly one.
    ///
    /// A repeated entry in an id list (members, asset groups, project assets, domains) is
    /// stored once: the export gives back `WorkspaceDocument.normalized(workspace)`.
    @discardableResult
    public func importWorkspace(_ workspace: Workspace) throws(StoreError) -> UInt64 {
        let issues = WorkspaceDocument.validate(workspace)
        guard issues.isEmpty else {
            throw StoreError(
                code: .invalidWorkspace(issues),
                message: "the workspace has \(issues.count) problem\(issues.count == 1 ? "" : "s"); nothing was imported")
        }
        let connection = self.connection
        // A large import touches every page: keep them in memory instead of spilling
        // half-written pages to the WAL and reading them back.
        let cacheSize = try connection.queryInt("PRAGMA cache_size") ?? -2_000
        try connection.exec("PRAGMA cache_size = \(importCacheSize)")
        defer { try? connection.exec("PRAGMA cache_size = \(cacheSize)") }
        do {
            return try connection.transaction(.immediate) { () throws(StoreError) -> UInt64 in
                // Another process may have migrated the file past this build since open.
                try connection.requireCurrentSchema()
                let before = try connection.snapshotVersion()
                let suspended = try connection.dropSchemaObjects(named: Schema.importSuspended)
                for table in Schema.dataTables {
                    try connection.exec("DELETE FROM \(table)")
                }
                try WorkspaceWriter(connection: connection).insert(workspace)
                try connection.recreate(suspended)
                try connection.exec("UPDATE meta SET version = version + 1 WHERE id = 1")
                let after = try connection.snapshotVersion()
                guard after > before else {
                    throw StoreError(code: .corrupt, message: "the snapshot version did not increase (\(before) → \(after))")
                }
                return after
            }
        } catch {
            throw error.prefixed("import failed, nothing was changed")
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

// The read-only side: builds engine snapshots from a store database and probes its
// snapshot version cheaply. Never creates, migrates or writes the database.

public import AuthzEngine
import CSQLite

/// Loads snapshots from a workspace store database, read-only.
///
/// Each call opens the file with SQLITE_OPEN_READONLY (a missing file is `.notFound`; a
/// file without a schema is `.notInitialized`; a newer schema is `.schemaTooNew`) and reads
/// everything inside ONE read transaction, so a concurrent writer's commit is either wholly
/// visible or not at all. In WAL mode the read neither waits for nor blocks the writer.
/// On a file that a Litestream follower updates in place (under SQLite's locks, see
/// `VersionProbe`), the transaction's SHARED lock keeps the follower out until the read is
/// over, so the version and every row come from one applied state; the connection is
/// closed when the call returns, so nothing is held between loads.
public enum SnapshotLoader {
    /// Reads the workspace and builds the engine snapshot from it.
    public static func load(path: String) throws(StoreError) -> Snapshot {
        let (workspace, version) = try readWorkspace(path: path)
        return Snapshot(workspace: workspace, version: version)
    }

    /// Reads the workspace and its snapshot version, consistently.
    public static func readWorkspace(path: String) throws(StoreError) -> (workspace: Workspace, version: UInt64) {
        let connection = try openReadOnly(path)
        return try connection.transaction(.deferred) { () throws(StoreError) in
            try WorkspaceReader(connection: connection).read()
        }
    }

    /// Reads only the snapshot version (opens the file each time; a poller should keep a
    /// `VersionProbe` instead).
    public static func readVersion(path: String) throws(StoreError) -> UInt64 {
        let connection = try openReadOnly(path)
        return try connection.transaction(.deferred) { () throws(StoreError) in
            try connection.requireCurrentSchema()
            return try connection.snapshotVersion()
        }
    }

    /// The changes after snapshot version `since` (read-only, one read transaction), or nil
    /// when the change log does not reach back that far: then load everything. See
    /// `WorkspaceStore.changes(since:)`.
    public static func readChanges(path: String, since: UInt64) throws(StoreError) -> ChangeSet? {
        let connection = try openReadOnly(path)
        return try connection.transaction(.deferred) { () throws(StoreError) in
            try connection.requireCurrentSchema()
            return try connection.changes(since: since)
        }
    }

    /// Opens an existing database read-only; `.notFound` when there is no file.
    ///
    /// Never memory-maps the file: a page of a mapped file that is truncated under the
    /// reader (an operator's `cp` over it, a full disk) arrives as SIGBUS and kills the
    /// process, where `read` gives an error the reloader handles (SQLite's own default is
    /// no mapping, but a build may change it with SQLITE_DEFAULT_MMAP_SIZE).
    static func openReadOnly(_ path: String) throws(StoreError) -> Connection {
        guard !path.isEmpty else { throw StoreError(code: .notFound, message: "the database path is empty") }
        _ = try FileStatus.requireFile(path)
        do {
            let connection = try Connection.open(path: path, flags: SQLITE_OPEN_READONLY)
            try connection.exec("PRAGMA mmap_size = 0")
            return connection
        } catch {
            // Removed between the check and the open.
            if FileStatus(path: path) == .missing {
                throw StoreError(code: .notFound, message: "no database at \(path)", cause: error)
            }
            throw error
        }
    }
}

/// A cheap, repeatable probe of a store's snapshot version, for a poller that reloads the
/// snapshot when the version changes. Each `current()` opens the file read-only, reads the
/// version in one read transaction and closes it again (~0.1 ms).
///
/// It deliberately keeps no connection between checks. A connection to a WAL-mode file
/// holds SQLite's SHARED lock on the database file for as long as it is open, and a
/// writer that updates the file in place under SQLite's locks, as Litestream's follower
/// (`litestream restore -f`) does, waits for that lock: a probe that stayed open would
/// stall replication for as long as it lived. Nor could a kept connection trust its page
/// cache on such a file: in rollback mode SQLite revalidates it by the header's change
/// counter, which a replicated transaction that leaves page 1 alone does not move.
///
/// A probe for a database that does not exist yet (or has no schema) throws from
/// `current()` until it does; a replaced file is simply read at the next check. Safe to
/// share between tasks and threads.
public final class VersionProbe: Sendable {
    /// The database path being probed.
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// The snapshot version now.
    ///
    /// Fails with `.notFound` while there is no file, `.notInitialized` while it has no
    /// schema, `.schemaTooNew` once a newer build has migrated it, `.busy`, `.io`.
    public func current() throws(StoreError) -> UInt64 {
        try SnapshotLoader.readVersion(path: path)
    }
}

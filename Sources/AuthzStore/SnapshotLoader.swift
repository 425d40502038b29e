// The read-only side: builds engine snapshots from a store database and probes its
// snapshot version cheaply. Never creates, migrates or writes the database.

public import AuthzEngine
import CSQLite
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

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
/// snapshot when the version changes. Keeps one read-only connection and one prepared
/// single-row query; each `current()` is one indexed lookup plus two `stat`s.
///
/// Except on a database that Litestream's follower (`litestream restore -f`) keeps, which
/// it marks with a `PATH-txid` file: there the connection is closed after each check (the
/// next one opens the file again, ~2–3 ms, mostly reading the schema). The follower writes
/// each replicated transaction's pages into the database file under SQLite's locks,
/// waiting (F_SETLKW) until no reader holds SHARED, and a WAL-mode connection (the restored
/// file is in WAL mode) holds SHARED on the database file for as long as it is open: a kept
/// connection would stall the follower for as long as it lived. Nor could a kept connection
/// trust its page cache there: in rollback mode SQLite revalidates it by the header's change
/// counter, which a replicated transaction that leaves page 1 alone does not move.
///
/// Opening is lazy: a probe for a database that does not exist yet (or has no schema)
/// throws from `current()` until it does. If the file at `path` is replaced (another
/// inode), the probe reopens it. Safe to share between tasks and threads.
public final class VersionProbe: Sendable {
    /// The database path being probed.
    public let path: String
    private let state: Mutex<ProbeState>

    public init(path: String) {
        self.path = path
        self.state = Mutex(ProbeState(path: path))
    }

    /// The snapshot version now.
    ///
    /// Fails with `.notFound` while there is no file, `.notInitialized` while it has no
    /// schema, `.schemaTooNew` once a newer build has migrated it, `.busy`, `.io`.
    public func current() throws(StoreError) -> UInt64 {
        try state.withLock { (state: inout ProbeState) throws(StoreError) -> UInt64 in
            try state.current()
        }
    }

    /// `SnapshotLoader.loadDelta` on the probe's connection (kept open between calls, so a
    /// delta reload neither opens the file nor parses its schema again). On a Litestream
    /// follower's file, where the probe keeps no connection, on a connection of its own
    /// that is closed when it returns.
    public func loadDelta(
        base: Snapshot, baseFile: DatabaseFileIdentity?, maxChanges: Int = SnapshotLoader.defaultDeltaMaxChanges
    ) throws(StoreError) -> DeltaLoad {
        let path = path
        if ProbeState.isLitestreamFollower(path) {
            return try SnapshotLoader.loadDelta(path: path, base: base, baseFile: baseFile, maxChanges: maxChanges)
        }
        return try state.withLock { (state: inout ProbeState) throws(StoreError) -> DeltaLoad in
            _ = try state.current()  // (re)opens the connection for the file at the path now
            guard let connection = state.openConnection else {
                // It became a follower's file since the check above: a connection of its own.
                return try SnapshotLoader.loadDelta(path: path, base: base, baseFile: baseFile, maxChanges: maxChanges)
            }
            return try SnapshotLoader.loadDelta(
                connection: connection, path: path, base: base, baseFile: baseFile, maxChanges: maxChanges)
        }
    }
}

/// The probe's connection state, guarded by the probe's mutex.
struct ProbeState: ~Copyable {
    let path: String
    private var file: FileStatus?
    private var connection: Connection?
    private var query: Statement?

    init(path: String) {
        self.path = path
    }

    /// The open connection, if any.
    var openConnection: Connection? { connection }

    mutating func current() throws(StoreError) -> UInt64 {
        let status = try FileStatus.requireFile(path)
        if status != file {
            // First use, or the path now names another file: start over.
            query = nil
            connection = nil
            file = nil
        }
        let version = try read(prepared(status))
        if Self.isLitestreamFollower(path) {
            // Nothing keeps a lock or a page cache between checks (see `VersionProbe`).
            self.query = nil
            connection = nil
            file = nil
        }
        return version
    }

    private mutating func read(_ query: Statement) throws(StoreError) -> UInt64 {
        defer { query.reset() }
        guard try query.step() else {
            throw StoreError(code: .corrupt, message: "\(path): the meta row (snapshot version) is missing")
        }
        let schema = query.int64(1)
        guard schema == Int64(Schema.latestVersion) else {
            // Changed under the open connection (a migration): let the full check explain.
            self.query = nil
            try connection?.requireCurrentSchema()
            throw StoreError(code: .sqlite, message: "\(path): unexpected schema version \(schema)")
        }
        return try Connection.snapshotVersion(query, column: 0, path: path)
    }

    /// Whether `path-txid` exists: the last transaction `litestream restore -f` applied to
    /// the database at `path` (written after the restore and after each applied batch).
    static func isLitestreamFollower(_ path: String) -> Bool {
        var info = stat()
        return stat(path + "-txid", &info) == 0
    }

    private mutating func prepared(_ status: FileStatus) throws(StoreError) -> Statement {
        if let query { return query }
        let connection: Connection
        if let open = self.connection {
            connection = open
        } else {
            connection = try SnapshotLoader.openReadOnly(path)
            self.connection = connection
        }
        file = status
        try connection.requireCurrentSchema()
        let query = try connection.prepare(
            "SELECT meta.version, pragma_user_version.user_version FROM meta, pragma_user_version WHERE meta.id = 1")
        self.query = query
        return query
    }
}

// The one error type of the store's public API, shaped like grpc-swift's `RPCError`:
// a machine-readable `code`, a human `message`, and the underlying `cause` (for SQLite
// failures a `SQLiteError` carrying the result code, extended code, message and SQL).

public import AuthzDocument

/// An error from the workspace store or the snapshot loader.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, for programs to switch on.
    public enum Code: Sendable, Hashable, CustomStringConvertible {
        /// The database file does not exist (and was not to be created).
        case notFound
        /// The database exists but holds no workspace: schema not created yet
        /// (`user_version` 0) or no workspace imported yet.
        case notInitialized
        /// The database was written by a newer build: its schema version `found` is higher
        /// than the newest this build knows, `supported`. Nothing was changed.
        case schemaTooNew(found: Int, supported: Int)
        /// The file is an SQLite database, but not one of this store (foreign tables or a
        /// different `application_id`). Nothing was changed.
        case notAWorkspaceStore
        /// The workspace failed semantic validation; every issue found is listed.
        /// Nothing was changed.
        case invalidWorkspace([ValidationIssue])
        /// Operations (`WorkspaceStore.apply`) were rejected; every problem is listed with
        /// its line. Nothing was changed.
        case invalidOperations([OperationIssue])
        /// A schema constraint (CHECK, UNIQUE, NOT NULL, FOREIGN KEY, a guard trigger)
        /// rejected a write. The transaction was rolled back.
        case constraint
        /// The stored data breaks an invariant of the schema (a dangling reference, an
        /// unknown enum value) or the file is not a valid database.
        case corrupt
        /// The database is locked by another connection and the busy timeout expired.
        case busy
        /// A write was attempted on a read-only database or connection.
        case readOnly
        /// The operating system failed to open, read or write the file (or the disk is full).
        case io
        /// Any other SQLite failure (including a bug in the SQL of this module).
        case sqlite

        public var description: String {
            switch self {
            case .notFound: "notFound"
            case .notInitialized: "notInitialized"
            case .schemaTooNew(let found, let supported): "schemaTooNew(found: \(found), supported: \(supported))"
            case .notAWorkspaceStore: "notAWorkspaceStore"
            case .invalidWorkspace(let issues): "invalidWorkspace(\(issues.count) issue\(issues.count == 1 ? "" : "s"))"
            case .invalidOperations(let issues): "invalidOperations(\(issues.count) issue\(issues.count == 1 ? "" : "s"))"
            case .constraint: "constraint"
            case .corrupt: "corrupt"
            case .busy: "busy"
            case .readOnly: "readOnly"
            case .io: "io"
            case .sqlite: "sqlite"
            }
        }
    }

    /// What went wrong, for programs.
    public var code: Code
    /// What went wrong, for people.
    public var message: String
    /// The underlying error, if any (a `SQLiteError` for SQLite failures).
    public var cause: (any Error & Sendable)?

    public init(code: Code, message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The validation issues of an `.invalidWorkspace` error; empty for every other code.
    public var issues: [ValidationIssue] {
        if case .invalidWorkspace(let issues) = code { return issues }
        return []
    }

    /// The problems of an `.invalidOperations` error; empty for every other code.
    public var operationIssues: [OperationIssue] {
        if case .invalidOperations(let issues) = code { return issues }
        return []
    }

    /// The SQLite failure behind this error, if there is one.
    public var sqliteError: SQLiteError? { cause as? SQLiteError }

    public var description: String {
        var text = "\(code): \(message)"
        if case .invalidWorkspace(let issues) = code {
            for issue in issues { text += "\n  \(issue.path): \(issue.reason)" }
        }
        if case .invalidOperations(let issues) = code {
            for issue in issues { text += "\n  \(issue)" }
        }
        if let cause { text += " (cause: \(cause))" }
        return text
    }

    /// The same error with `context` prepended to its message ("context: message").
    func prefixed(_ context: String) -> StoreError {
        var copy = self
        copy.message = "\(context): \(message)"
        return copy
    }
}

/// A failed SQLite call: the primary and extended result codes, SQLite's message, and the
/// SQL that was being prepared or run (nil for calls that run no SQL, e.g. opening).
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// The primary result code (`SQLITE_BUSY` = 5, `SQLITE_CONSTRAINT` = 19, ...).
    public var code: Int32
    /// The extended result code (`SQLITE_CONSTRAINT_UNIQUE` = 2067, ...).
    public var extendedCode: Int32
    /// SQLite's message (`sqlite3_errmsg`).
    public var message: String
    /// The statement that failed, if the failure came from SQL.
    public var sql: String?

    public init(code: Int32, extendedCode: Int32, message: String, sql: String?) {
        self.code = code
        self.extendedCode = extendedCode
        self.message = message
        self.sql = sql
    }

    public var description: String {
        var text = "SQLite error \(code)"
        if extendedCode != code { text += "/\(extendedCode)" }
        text += ": \(message)"
        if let sql { text += " [SQL: \(sql.count > 300 ? String(sql.prefix(300)) + "…" : sql)]" }
        return text
    }
}

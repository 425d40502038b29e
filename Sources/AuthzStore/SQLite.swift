// A thin, safe layer over the SQLite C API: connections, prepared statements and
// transactions. Every failure becomes a `StoreError` whose cause is a `SQLiteError` with
// the result code, the extended code, SQLite's message and the SQL that failed.
//
// A `Connection` and its `Statement`s belong to one thread of control at a time (they are
// not Sendable); they are opened with SQLITE_OPEN_NOMUTEX accordingly.

import CSQLite

/// `SQLITE_TRANSIENT` is a macro Swift does not import: it tells SQLite to copy the value.
private let transientDestructor = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// How long a connection waits for another connection's lock before failing with `.busy`.
let defaultBusyTimeoutMilliseconds: Int32 = 5_000

extension StoreError {
    /// Maps an SQLite result code to a store error code.
    static func code(forSQLite code: Int32) -> Code {
        switch code & 0xFF {
        case SQLITE_BUSY, SQLITE_LOCKED: .busy
        case SQLITE_READONLY: .readOnly
        case SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_NOLFS, SQLITE_PROTOCOL: .io
        case SQLITE_CORRUPT, SQLITE_NOTADB: .corrupt
        case SQLITE_CONSTRAINT: .constraint
        default: .sqlite
        }
    }

    /// A store error for a failed SQLite call on `handle`.
    static func sqlite(_ result: Int32, handle: OpaquePointer?, sql: String?) -> StoreError {
        // The connection's error state describes this failure only when its code matches
        // (a result produced by this layer, e.g. SQLITE_TOOBIG, never reached SQLite).
        let handle = handle.flatMap { sqlite3_errcode($0) & 0xFF == result & 0xFF ? $0 : nil }
        let extended = handle.map { sqlite3_extended_errcode($0) } ?? result
        let message: String
        if let handle, let text = sqlite3_errmsg(handle) {
            message = String(cString: text)
        } else if let text = sqlite3_errstr(result) {
            message = String(cString: text)
        } else {
            message = "unknown error"
        }
        let cause = SQLiteError(code: result & 0xFF, extendedCode: extended, message: message, sql: sql)
        return StoreError(code: code(forSQLite: result), message: message, cause: cause)
    }
}

/// An open SQLite database connection. Closed when released (after its statements).
final class Connection {
    let handle: OpaquePointer
    /// The path it was opened with (for messages).
    let path: String

    private init(handle: OpaquePointer, path: String) {
        self.handle = handle
        self.path = path
    }

    deinit {
        // `close_v2` defers the close until every statement is finalized; statements hold a
        // strong reference to their connection, so by now there are none.
        sqlite3_close_v2(handle)
    }

    /// Opens `path` with `flags` (SQLITE_OPEN_READONLY or SQLITE_OPEN_READWRITE, optionally
    /// SQLITE_OPEN_CREATE), turns on extended result codes, foreign keys and a busy timeout.
    static func open(path: String, flags: Int32) throws(StoreError) -> Connection {
        var handle: OpaquePointer?
        let result = sqlite3_open_v2(path, &handle, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard result == SQLITE_OK, let handle else {
            let error = StoreError.sqlite(result, handle: handle, sql: nil)
            if let handle { sqlite3_close_v2(handle) }
            throw error.prefixed("cannot open \(path)")
        }
        let connection = Connection(handle: handle, path: path)
        sqlite3_extended_result_codes(handle, 1)
        sqlite3_busy_timeout(handle, defaultBusyTimeoutMilliseconds)
        try connection.exec("PRAGMA foreign_keys = ON")
        // Foreign keys are a no-op (not an error) in a build without them: insist.
        guard try connection.queryInt("PRAGMA foreign_keys") == 1 else {
            throw StoreError(code: .sqlite, message: "this SQLite build cannot enforce foreign keys")
        }
        return connection
    }

    /// Runs one or more SQL statements that return no rows of interest.
    func exec(_ sql: String) throws(StoreError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let result = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if let errorMessage { sqlite3_free(errorMessage) }
        guard result == SQLITE_OK else { throw StoreError.sqlite(result, handle: handle, sql: sql) }
    }

    /// Compiles one SQL statement.
    func prepare(_ sql: String) throws(StoreError) -> Statement {
        var statement: OpaquePointer?
        let result = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard result == SQLITE_OK else {
            if let statement { sqlite3_finalize(statement) }
            throw StoreError.sqlite(result, handle: handle, sql: sql)
        }
        guard let statement else {
            throw StoreError(code: .sqlite, message: "no SQL statement in \"\(sql)\"")
        }
        return Statement(connection: self, handle: statement, sql: sql)
    }

    /// The first column of the first row of `sql` as an integer, or nil when there is no
    /// row or the value is NULL.
    func queryInt(_ sql: String) throws(StoreError) -> Int64? {
        let statement = try prepare(sql)
        guard try statement.step(), !statement.isNull(0) else { return nil }
        return statement.int64(0)
    }

    /// The first column of the first row of `sql` as text, or nil.
    func queryText(_ sql: String) throws(StoreError) -> String? {
        let statement = try prepare(sql)
        guard try statement.step() else { return nil }
        return statement.text(0)
    }

    /// Whether the connection is outside an explicit transaction.
    var isAutocommit: Bool { sqlite3_get_autocommit(handle) != 0 }

    /// `PRAGMA user_version`.
    func userVersion() throws(StoreError) -> Int {
        Int(try queryInt("PRAGMA user_version") ?? 0)
    }

    enum TransactionKind: String {
        /// A read transaction starts at the first read and sees one consistent snapshot.
        case deferred = "BEGIN DEFERRED"
        /// Takes the write lock at once, so the transaction cannot fail later with BUSY.
        case immediate = "BEGIN IMMEDIATE"
    }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it (or the
    /// COMMIT) throws. The rollback leaves the database exactly as it was.
    func transaction<T>(_ kind: TransactionKind, _ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        try exec(kind.rawValue)
        do {
            let value = try body()
            try exec("COMMIT")
            return value
        } catch {
            rollback()
            throw error
        }
    }

    /// Rolls back the open transaction, if SQLite has not already done so (it does after
    /// some errors, e.g. SQLITE_FULL or an I/O error).
    func rollback() {
        guard !isAutocommit else { return }
        // A ROLLBACK can only fail when there is no transaction left to undo.
        _ = sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
    }
}

/// A prepared statement. Finalized when released.
final class Statement {
    let connection: Connection
    let handle: OpaquePointer
    let sql: String

    fileprivate init(connection: Connection, handle: OpaquePointer, sql: String) {
        self.connection = connection
        self.handle = handle
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    private func check(_ result: Int32) throws(StoreError) {
        guard result == SQLITE_OK else { throw StoreError.sqlite(result, handle: connection.handle, sql: sql) }
    }

    // MARK: Binding (parameter indexes start at 1)

    func bind(_ value: Int64, at index: Int32) throws(StoreError) {
        try check(sqlite3_bind_int64(handle, index, value))
    }

    func bind(_ value: Int, at index: Int32) throws(StoreError) {
        try check(sqlite3_bind_int64(handle, index, Int64(value)))
    }

    func bind(_ value: Bool, at index: Int32) throws(StoreError) {
        try check(sqlite3_bind_int64(handle, index, value ? 1 : 0))
    }

    func bind(_ value: String, at index: Int32) throws(StoreError) {
        var value = value
        let result = value.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { chars in
                // An empty string still needs a non-NULL pointer: NULL would bind SQL NULL.
                guard let base = chars.baseAddress, !chars.isEmpty else {
                    return sqlite3_bind_text(handle, index, "", 0, transientDestructor)
                }
                guard let count = Int32(exactly: chars.count) else { return SQLITE_TOOBIG }
                return sqlite3_bind_text(handle, index, base, count, transientDestructor)
            }
        }
        try check(result)
    }

    func bindNull(at index: Int32) throws(StoreError) {
        try check(sqlite3_bind_null(handle, index))
    }

    func bind(_ value: String?, at index: Int32) throws(StoreError) {
        if let value { try bind(value, at: index) } else { try bindNull(at: index) }
    }

    func bind(_ value: Int64?, at index: Int32) throws(StoreError) {
        if let value { try bind(value, at: index) } else { try bindNull(at: index) }
    }

    // MARK: Running

    /// Advances to the next row: true when a row is available, false when done.
    @discardableResult
    func step() throws(StoreError) -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let result: throw StoreError.sqlite(result, handle: connection.handle, sql: sql)
        }
    }

    /// Runs a statement that returns no rows, then resets it for the next use.
    func run() throws(StoreError) {
        defer { reset() }
        while try step() {}
    }

    /// Makes the statement ready to run again (bindings are kept). The result of the last
    /// step was already reported by `step()`, so `sqlite3_reset`'s copy of it is dropped.
    func reset() {
        sqlite3_reset(handle)
    }

    // MARK: Columns (indexes start at 0)

    /// The number of columns of the statement's rows.
    var columnCount: Int32 { sqlite3_column_count(handle) }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    /// The column as text (nil for NULL).
    func text(_ column: Int32) -> String? {
        guard let pointer = sqlite3_column_text(handle, column) else { return nil }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    /// Calls `body` with the column's UTF-8 bytes (nil for NULL), valid only during the call.
    func withTextBytes<T>(_ column: Int32, _ body: (UnsafeBufferPointer<UInt8>?) -> T) -> T {
        guard let pointer = sqlite3_column_text(handle, column) else { return body(nil) }
        let count = Int(sqlite3_column_bytes(handle, column))
        return body(UnsafeBufferPointer(start: pointer, count: count))
    }
}

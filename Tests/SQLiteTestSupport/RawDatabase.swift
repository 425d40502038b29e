// A plain sqlite3 connection for tests, independent of the store's own layer: the
// "second connection" a person with the sqlite3 CLI would have.

import CSQLite

public struct RawSQLiteError: Error, CustomStringConvertible {
    public var code: Int32
    public var message: String
    public var description: String { "SQLite \(code): \(message)" }
}

/// A plain sqlite3 connection, independent of the store's own layer. Foreign keys are OFF
/// unless asked for, as in the sqlite3 CLI.
public final class RawDatabase {
    public let handle: OpaquePointer

    public init(_ path: String, foreignKeys: Bool = false, readOnly: Bool = false) throws {
        var handle: OpaquePointer?
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let result = sqlite3_open_v2(path, &handle, flags, nil)
        guard result == SQLITE_OK, let handle else {
            sqlite3_close_v2(handle)
            throw RawSQLiteError(code: result, message: "cannot open \(path)")
        }
        self.handle = handle
        sqlite3_busy_timeout(handle, 2_000)
        if foreignKeys { try exec("PRAGMA foreign_keys = ON") }
    }

    deinit { sqlite3_close_v2(handle) }

    /// Rows changed by the last statement.
    public var changes: Int32 { sqlite3_changes(handle) }

    public func exec(_ sql: String) throws {
        let result = sqlite3_exec(handle, sql, nil, nil, nil)
        guard result == SQLITE_OK else {
            throw RawSQLiteError(code: result, message: String(cString: sqlite3_errmsg(handle)))
        }
    }

    /// The first column of every row, as text (NULL as "NULL").
    public func column(_ sql: String) throws -> [String] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw RawSQLiteError(code: sqlite3_errcode(handle), message: String(cString: sqlite3_errmsg(handle)))
        }
        defer { sqlite3_finalize(statement) }
        var values: [String] = []
        while true {
            let result = sqlite3_step(statement)
            if result == SQLITE_DONE { break }
            guard result == SQLITE_ROW else {
                throw RawSQLiteError(code: result, message: String(cString: sqlite3_errmsg(handle)))
            }
            if let text = sqlite3_column_text(statement, 0) {
                values.append(String(cString: text))
            } else {
                values.append("NULL")
            }
        }
        return values
    }

    public func int(_ sql: String) throws -> Int64 {
        guard let text = try column(sql).first, let value = Int64(text) else {
            throw RawSQLiteError(code: SQLITE_ERROR, message: "no integer from \(sql)")
        }
        return value
    }
}


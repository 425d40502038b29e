// Helpers for the store tests: temporary directories, a raw sqlite3 connection (the
// "second connection" a person with the sqlite3 CLI would have), sample workspaces.

import AuthzEngine
import AuthzStore
import CSQLite
import Foundation
import Testing

/// A fresh temporary directory, removed when released.
final class StoreScratchDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("authz-store-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: url)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// Whether something exists at `path`.
func fileExists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

/// The bytes of a file (empty when missing).
func fileBytes(_ path: String) -> Data { FileManager.default.contents(atPath: path) ?? Data() }

struct RawSQLiteError: Error, CustomStringConvertible {
    var code: Int32
    var message: String
    var description: String { "SQLite \(code): \(message)" }
}

/// A plain sqlite3 connection, independent of the store's own layer. Foreign keys are OFF
/// unless asked for, as in the sqlite3 CLI.
final class RawDatabase {
    let handle: OpaquePointer

    init(_ path: String, foreignKeys: Bool = false, readOnly: Bool = false) throws {
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
    var changes: Int32 { sqlite3_changes(handle) }

    func exec(_ sql: String) throws {
        let result = sqlite3_exec(handle, sql, nil, nil, nil)
        guard result == SQLITE_OK else {
            throw RawSQLiteError(code: result, message: String(cString: sqlite3_errmsg(handle)))
        }
    }

    /// The first column of every row, as text (NULL as "NULL").
    func column(_ sql: String) throws -> [String] {
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

    func int(_ sql: String) throws -> Int64 {
        guard let text = try column(sql).first, let value = Int64(text) else {
            throw RawSQLiteError(code: SQLITE_ERROR, message: "no integer from \(sql)")
        }
        return value
    }
}

/// The error a store call throws, or nil when it succeeds (any other error is a failure).
func storeError<T>(_ body: () throws -> T, sourceLocation: SourceLocation = #_sourceLocation) -> StoreError? {
    do {
        _ = try body()
        return nil
    } catch let error as StoreError {
        return error
    } catch {
        Issue.record("expected a StoreError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// A small workspace that uses every field: directory sync with role mappings, every
/// origin, an explicit and a missing role, an inactive user, both group sources, built-in
/// and custom asset groups (in a mixed order), an empty asset group list, grants to users
/// and to groups, a project with an owner and one without.
func sampleWorkspace() -> Workspace {
    Workspace(
        settings: WorkspaceSettings(
            plan: .enterprise,
            allowedDomains: ["acme.com", "acme-labs.io"],
            defaultDomainRole: .explorer,
            viewerSeatsPaid: true,
            directorySync: DirectorySync(
                enabled: true,
                roleSync: true,
                roleMappings: [
                    RoleMapping(group: "g-dir-admins", role: .admin),
                    RoleMapping(group: "g-dir-editors", role: .editor),
                ])),
        users: [
            User(id: "u-ada", email: "ada@acme.com", origin: .manual, role: .admin),
            User(id: "u-bo", email: "bo@acme.com", origin: .directory),
            User(id: "u-cy", email: "cy@partner.io", origin: .invite, active: false),
            User(id: "u-dee", email: "dee@acme.com", origin: .domain, role: .manager),
            User(id: "u-eve", email: "eve@acme.com", origin: .manual, role: .guest),
        ],
        groups: [
            Group(id: "g-dir-admins", name: "Directory Admins", source: .directory, members: ["u-bo"]),
            Group(id: "g-dir-editors", name: "Directory Editors", source: .directory, members: []),
            Group(id: "g-data", name: "Data Team", source: .workspace, members: ["u-eve", "u-ada", "u-cy"]),
        ],
        assets: [
            Asset(id: "a-warehouse", kind: .dataConnection, name: "Warehouse"),
            Asset(id: "a-hr", kind: .secret, name: "HR secret", groups: ["g-data"]),
            Asset(
                id: "a-key", kind: .gitPackage, name: "Package",
                groups: ["g-data", "public", "workspace_guests", "workspace", "g-dir-admins"]),
            Asset(id: "a-admins-only", kind: .externalFile, name: "Admins only", groups: []),
        ],
        projects: [
            Project(
                id: "p-revenue", owner: "u-ada", workspaceAccess: .canView, publicAccess: .canViewApp,
                grants: [
                    .user("u-cy", .canEdit),
                    .group("g-data", .fullAccess),
                    .user("u-eve", .canExplore),
                    .group("g-dir-admins", .canViewApp),
                    .user("u-cy", .none),
                ],
                assets: ["a-hr", "a-warehouse"]),
            Project(id: "p-orphan"),
            Project(id: "p-ops", owner: "u-dee", workspaceAccess: .fullAccess, assets: ["a-admins-only"]),
        ])
}

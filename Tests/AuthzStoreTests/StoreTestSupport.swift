// Helpers for the store tests: temporary directories, a raw sqlite3 connection (the
// "second connection" a person with the sqlite3 CLI would have), sample workspaces.

import AuthzEngine
import AuthzStore
import SQLiteTestSupport
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

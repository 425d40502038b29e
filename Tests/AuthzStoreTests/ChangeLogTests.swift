// Tests of the change log (schema version 2) and the diff import (issue 13).

import AuthzDocument
import AuthzEngine
import AuthzStore
import Foundation
import SQLiteTestSupport
import Testing

/// The logged changes after `since` as "table key op" strings, in order.
func loggedChanges(_ store: WorkspaceStore, since: UInt64) throws -> [String] {
    guard let set = try store.changes(since: since) else {
        Issue.record("the log does not reach back to \(since)")
        return []
    }
    return set.changes.map { "\($0.table) \($0.key) \($0.operation.rawValue)" }
}

@Suite("Change log and diff import")
struct ChangeLogTests {
    // MARK: The log

    @Test func aNewStoreHasAnEmptyLogFromVersionZero() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let status = try store.changeLogStatus()
        #expect(status.version == 0 && status.floor == 0 && status.rows == 0)
        #expect(status.keepVersions == 100_000)
        #expect(status.keepMilliseconds == Int64(7 * 24 * 3_600_000))
        #expect(try store.changes(since: 0) == ChangeSet(since: 0, version: 0, changes: []))
        #expect(try store.changes(since: 1) == nil)
    }

    @Test func theFirstImportReplacesAndStartsTheLogAtItsVersion() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let summary = try store.importChanges(sampleWorkspace(), mode: .automatic)
        #expect(summary.replaced)
        #expect(summary.version == 1)
        #expect(try store.changeLogStatus().floor == 1)
        #expect(try store.changes(since: 0) == nil)
        #expect(try store.changes(since: 1)?.changes == [])
    }

    @Test func importingTheSameWorkspaceAgainChangesNothing() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        let summary = try store.importChanges(sampleWorkspace(), mode: .automatic)
        #expect(!summary.replaced)
        #expect(summary.rowsWritten == 0)
        #expect(summary.version == version)
        #expect(try RawDatabase(path).int("SELECT count(*) FROM changes") == 0)
        // Also after a diff import onto an empty store and with repeated list entries.
        var repeated = sampleWorkspace()
        repeated.groups[2].members += ["u-ada"]
        #expect(try store.importChanges(repeated, mode: .diff).rowsWritten == 0)
        let fresh = try WorkspaceStore.open(path: directory.path("fresh.db"))
        let first = try fresh.importChanges(sampleWorkspace(), mode: .diff)
        #expect(!first.replaced)
        #expect(try fresh.exportWorkspace().workspace == sampleWorkspace())
        #expect(try fresh.importChanges(sampleWorkspace(), mode: .diff).version == first.version)
    }

    @Test func changingOneGrantBumpsTheVersionByOneAndLogsIt() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let version = try store.importWorkspace(sampleWorkspace())
        var changed = sampleWorkspace()
        changed.projects[0].grants[1].level = .canView
        let summary = try store.importChanges(changed, mode: .automatic)
        #expect(summary.version == version + 1)
        #expect(try loggedChanges(store, since: version) == ["project_grants p-revenue/group/g-data update"])
        #expect(try store.changes(since: version)?.changes.map(\.version) == [version + 1])
        #expect(try store.exportWorkspace().workspace == changed)
        #expect(try SnapshotLoader.readChanges(path: directory.path("store.db"), since: version)
            == store.changes(since: version))
    }

    @Test func everyKindOfDifferenceIsWrittenAndLogged() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let version = try store.importWorkspace(sampleWorkspace())
        var changed = sampleWorkspace()
        changed.settings.viewerSeatsPaid = false
        changed.settings.allowedDomains = ["acme-labs.io", "new.example"]
        changed.settings.directorySync.roleMappings[1].role = .manager
        changed.users[3].active = false
        changed.users.append(User(id: "u-fay", email: "fay@acme.com", origin: .invite))
        changed.groups[2].members = ["u-eve", "u-cy", "u-fay"]
        changed.assets[1].groups = ["g-data", "public"]
        changed.projects[0].grants.append(.user("u-fay", .canView))
        changed.projects[2].owner = "u-fay"
        changed.projects[1].assets = ["a-key"]
        let summary = try store.importChanges(changed, mode: .automatic)
        #expect(!summary.replaced)
        #expect(try store.exportWorkspace().workspace == changed)
        let logged = try loggedChanges(store, since: version)
        #expect(Set(logged) == [
            "workspace workspace update",
            "allowed_domains acme.com delete", "allowed_domains new.example insert",
            "role_mappings g-dir-editors update",
            "users u-dee update", "users u-fay insert",
            "group_members g-data/u-ada delete", "group_members g-data/u-fay insert",
            "asset_groups a-hr/public insert",
            "project_grants p-revenue/user/u-fay insert",
            "projects p-ops update",
            "project_assets p-orphan/a-key insert",
        ])
        #expect(logged.count == 12)
        #expect(summary.version == version + 12)
        #expect(summary.rowsWritten == 12)
    }

    @Test func deletedEntitiesCascadeAndEveryRowIsLogged() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let version = try store.importWorkspace(sampleWorkspace())
        var changed = sampleWorkspace()
        // Remove u-cy everywhere the document mentions it, and the group g-data.
        changed.users.remove(at: 2)
        changed.groups.remove(at: 2)
        changed.assets[1].groups = []
        changed.assets[2].groups = ["public", "workspace_guests", "workspace", "g-dir-admins"]
        changed.projects[0].grants = [.user("u-eve", .canExplore), .group("g-dir-admins", .canViewApp)]
        let summary = try store.importChanges(changed, mode: .diff)
        #expect(try store.exportWorkspace().workspace == changed)
        let logged = try loggedChanges(store, since: version)
        #expect(Set(logged) == [
            "users u-cy delete", "groups g-data delete",
            "group_members g-data/u-eve delete", "group_members g-data/u-ada delete",
            "group_members g-data/u-cy delete",
            "asset_groups a-hr/g-data delete", "asset_groups a-key/g-data delete",
            "project_grants p-revenue/user/u-cy delete", "project_grants p-revenue/group/g-data delete",
        ])
        #expect(logged.count == 10)  // u-cy had two grants on p-revenue
        #expect(summary.version == version + 10)
    }

    @Test func movingAListEntryKeepsTheExactOrder() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let version = try store.importWorkspace(sampleWorkspace())
        var changed = sampleWorkspace()
        changed.groups[2].members = ["u-cy", "u-eve", "u-ada"]
        changed.assets[2].groups = ["public", "g-data", "workspace_guests", "workspace", "g-dir-admins"]
        changed.projects[0].grants.insert(.user("u-bo", .canView), at: 1)
        try store.importChanges(changed, mode: .diff)
        #expect(try store.exportWorkspace().workspace == changed)
        let logged = try loggedChanges(store, since: version)
        // Kept: the longest prefix of the new list that the stored list has in that order.
        #expect(!logged.contains("group_members g-data/u-cy delete"))
        #expect(logged.filter { $0.hasPrefix("group_members") }.count == 4)
        #expect(logged.filter { $0.hasPrefix("asset_groups") }.count == 8)
        #expect(logged.filter { $0.hasPrefix("project_grants") }.count == 2 * 4 + 1)
        // Moving the first entry to the end costs one delete and one insert.
        var last = changed
        last.groups[2].members = ["u-eve", "u-ada", "u-cy"]
        let before = try store.snapshotVersion()
        try store.importChanges(last, mode: .diff)
        #expect(try loggedChanges(store, since: before) == ["group_members g-data/u-cy delete", "group_members g-data/u-cy insert"])
        #expect(try store.exportWorkspace().workspace == last)
    }

    @Test func anInvalidDocumentWritesNothing() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        var invalid = sampleWorkspace()
        invalid.projects[0].grants[0].level = .canView
        invalid.projects[1].owner = "u-nobody"
        #expect(storeError { try store.importChanges(invalid, mode: .diff) }?.issues.isEmpty == false)
        #expect(try store.snapshotVersion() == version)
        #expect(try store.changes(since: version)?.changes == [])
        #expect(try store.exportWorkspace().workspace == sampleWorkspace())
    }

    @Test func aFailedDiffRollsBackTheRowsAndTheLog() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        let raw = try RawDatabase(path)
        try raw.exec("""
            CREATE TRIGGER test_boom BEFORE INSERT ON projects WHEN NEW.id = 'p-boom'
            BEGIN SELECT RAISE(ABORT, 'boom'); END
            """)
        var changed = sampleWorkspace()
        changed.users[0].active = false
        changed.projects.append(Project(id: "p-boom"))
        #expect(storeError { try store.importChanges(changed, mode: .diff) }?.code == .constraint)
        #expect(try store.snapshotVersion() == version)
        #expect(try raw.int("SELECT count(*) FROM changes") == 0)
        #expect(try store.exportWorkspace().workspace == sampleWorkspace())
    }

    @Test func aWorkspaceStillBeingDecodedIsAskedForInsideTheTransaction() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let version = try store.importWorkspace(sampleWorkspace())
        let failure = storeError {
            try store.importChanges(mode: .automatic) { () throws(StoreError) -> Workspace in
                throw StoreError(code: .invalidWorkspace([]), message: "not valid")
            }
        }
        #expect(failure?.code == .invalidWorkspace([]))
        #expect(try store.snapshotVersion() == version)
        var changed = sampleWorkspace()
        changed.users[0].active = false
        let summary = try store.importChanges(mode: .automatic) { () throws(StoreError) in changed }
        #expect(summary.version == version + 1)
        #expect(summary.phases.map(\.name) == ["read stored rows", "wait for the workspace", "plan", "write", "commit"])
        // A reference the workspace does not define is refused even unvalidated.
        var dangling = sampleWorkspace()
        dangling.groups[0].members = ["u-ghost"]
        #expect(storeError { try store.importChanges(mode: .diff) { () throws(StoreError) in dangling } }?.code == .constraint)
        #expect(try store.snapshotVersion() == version + 1)
    }

    @Test func replaceBumpsOnceAndRestartsTheLog() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let version = try store.importWorkspace(sampleWorkspace())
        var changed = sampleWorkspace()
        changed.users[0].active = false
        _ = try store.importChanges(changed, mode: .diff)
        #expect(try store.changeLogStatus().rows == 1)
        let replaced = try store.importChanges(sampleWorkspace(), mode: .replace)
        #expect(replaced.replaced && replaced.version == version + 2)
        #expect(try store.changeLogStatus().rows == 0)
        #expect(try store.changeLogStatus().floor == version + 2)
        #expect(try store.changes(since: version + 1) == nil)
        #expect(try store.changes(since: version + 2)?.changes == [])
    }

    // MARK: Hand edits

    @Test func handEditsAreLoggedByTheTriggers() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        let raw = try RawDatabase(path)  // foreign keys off, as in the sqlite3 CLI
        try raw.exec("""
            BEGIN;
            UPDATE users SET role = 'editor' WHERE id = 'u-eve';
            INSERT INTO project_grants (project_pk, user_pk, level)
                VALUES ((SELECT pk FROM projects WHERE id = 'p-orphan'), (SELECT pk FROM users WHERE id = 'u-bo'), 'can_view');
            UPDATE project_assets SET asset_pk = (SELECT pk FROM assets WHERE id = 'a-key')
                WHERE project_pk = (SELECT pk FROM projects WHERE id = 'p-ops');
            DELETE FROM users WHERE id = 'u-ada';
            COMMIT;
            """)
        let set = try #require(try store.changes(since: version))
        let logged = set.changes.map { "\($0.version - version) \($0.table) \($0.key) \($0.operation.rawValue)" }
        #expect(logged == [
            "1 users u-eve update",
            "2 project_grants p-orphan/user/u-bo insert",
            "3 project_assets p-ops/a-admins-only delete",
            "3 project_assets p-ops/a-key insert",
            // The cascade runs before the user row goes, so the keys still name u-ada.
            "4 group_members g-data/u-ada delete",
            "5 projects p-revenue update",
            "6 users u-ada delete",
        ])
        #expect(set.version == version + 6)
        #expect(set.keysByTable["users"] == ["u-eve", "u-ada"])
    }

    @Test(arguments: [true, false])
    func cascadesLogTheirRowsWithAndWithoutForeignKeys(foreignKeys: Bool) throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        let raw = try RawDatabase(path, foreignKeys: foreignKeys)
        try raw.exec("DELETE FROM groups WHERE id = 'g-data'")
        try raw.exec("DELETE FROM projects WHERE id = 'p-revenue'")
        let logged = try loggedChanges(store, since: version)
        #expect(logged == [
            "group_members g-data/u-eve delete", "group_members g-data/u-ada delete",
            "group_members g-data/u-cy delete",
            "asset_groups a-hr/g-data delete", "asset_groups a-key/g-data delete",
            "project_grants p-revenue/group/g-data delete",
            "groups g-data delete",
            "project_grants p-revenue/user/u-cy delete", "project_grants p-revenue/user/u-eve delete",
            "project_grants p-revenue/group/g-dir-admins delete", "project_grants p-revenue/user/u-cy delete",
            "project_assets p-revenue/a-hr delete", "project_assets p-revenue/a-warehouse delete",
            "projects p-revenue delete",
        ])
        #expect(try store.snapshotVersion() == version + UInt64(logged.count))
    }

    @Test func anEntityIdCannotBeChangedByHand() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        let raw = try RawDatabase(path)
        for table in ["users", "groups", "assets", "projects"] {
            #expect(throws: RawSQLiteError.self) { try raw.exec("UPDATE \(table) SET id = id || '-x'") }
        }
        #expect(try store.snapshotVersion() == version)
    }

    // MARK: Retention

    @Test func pruningByCountKeepsWholeVersionsAndRaisesTheFloor() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        let raw = try RawDatabase(path)
        for round in 0..<10 {
            try raw.exec("UPDATE users SET email = 'ada\(round)@acme.com' WHERE id = 'u-ada'")
        }
        #expect(try store.changeLogStatus().rows == 10)
        let status = try store.setChangeLogRetention(keepVersions: .limit(4))
        #expect(status.rows == 4)
        #expect(status.floor == version + 6)
        #expect(try store.changes(since: version + 5) == nil)
        #expect(try store.changes(since: version + 6)?.changes.count == 4)
        // A write of the store prunes too.
        var changed = sampleWorkspace()
        changed.users[0].email = "ada@acme.com"
        changed.users[1].active = false
        try store.importChanges(changed, mode: .diff)
        #expect(try store.changeLogStatus().rows == 4)
        #expect(try store.changeLogStatus().floor == version + 8)
    }

    @Test func pruningByAge() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        let raw = try RawDatabase(path)
        try raw.exec("UPDATE users SET active = 0 WHERE id = 'u-bo'")
        try raw.exec("UPDATE users SET active = 1 WHERE id = 'u-bo'")
        try raw.exec("UPDATE changes SET at_unix_ms = at_unix_ms - 3600000 WHERE version = \(version + 1)")
        let now = try raw.int("SELECT max(at_unix_ms) FROM changes")
        try store.setChangeLogRetention(keepVersions: .unlimited, keepMilliseconds: .limit(60_000))
        #expect(try store.changeLogStatus().rows == 1)
        #expect(try store.changeLogStatus().floor == version + 1)
        #expect(try store.changeLogStatus().keepVersions == nil)
        #expect(try store.pruneChangeLog(nowMilliseconds: now + 120_000) == 1)
        #expect(try store.changeLogStatus().floor == version + 2)
        #expect(try store.changes(since: version + 2)?.changes == [])
    }

    @Test func migratingAVersion1StoreStartsTheLogAtItsVersion() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("v1.db")
        // A version-1 database, as the previous build left it.
        let raw = try RawDatabase(path)
        try raw.exec("PRAGMA foreign_keys = ON")
        try raw.exec("BEGIN")
        try raw.exec(WorkspaceStore.migrationSQL(version: 1) ?? "")
        try raw.exec("PRAGMA user_version = 1; COMMIT;")
        try raw.exec("INSERT INTO workspace (id, plan) VALUES (1, 'team')")
        try raw.exec("INSERT INTO users (id, email, origin, role) VALUES ('u-a', 'a@x.io', 'manual', 'admin')")
        let store = try WorkspaceStore.open(path: path)
        #expect(store.schemaVersion == 2)
        let status = try store.changeLogStatus()
        #expect(status.version == 2 && status.floor == 2 && status.rows == 0)
        try raw.exec("DELETE FROM users WHERE id = 'u-a'")
        #expect(try loggedChanges(store, since: 2) == ["users u-a delete"])
    }
}

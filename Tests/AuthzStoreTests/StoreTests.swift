// Tests of the SQLite workspace store: migrations, import/export, the snapshot version,
// hand edits through a second connection, the read-only loader and the version probe.

import AuthzDocument
import AuthzEngine
import AuthzStore
import Foundation
import SQLiteTestSupport
import Testing

@Suite("WorkspaceStore")
struct StoreTests {
    // MARK: Opening and migrations

    @Test func createsAndMigratesAMissingFile() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("new.db")
        let store = try WorkspaceStore.open(path: path)
        #expect(fileExists(path))
        #expect(store.schemaVersion == WorkspaceStore.supportedSchemaVersion)
        #expect(try store.snapshotVersion() == 0)
        #expect(storeError { try store.exportWorkspace() }?.code == .notInitialized)

        let raw = try RawDatabase(path)
        #expect(try raw.int("PRAGMA user_version") == Int64(WorkspaceStore.supportedSchemaVersion))
        #expect(try raw.column("PRAGMA journal_mode") == ["wal"])
        let tables = try raw.column("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        #expect(tables == [
            "allowed_domains", "asset_groups", "assets", "changes", "group_members", "groups", "meta", "project_assets",
            "project_grants", "projects", "role_mappings", "users", "workspace",
        ])
        // Every data table has its three version triggers; the cascades and indexes exist.
        let triggers = Set(try raw.column("SELECT name FROM sqlite_schema WHERE type = 'trigger'"))
        for table in tables where table != "meta" && table != "changes" {
            for event in ["insert", "update", "delete"] {
                #expect(triggers.contains("\(table)_version_\(event)"), "no \(event) trigger on \(table)")
            }
        }
        for table in ["users", "groups", "assets", "projects"] {
            #expect(triggers.contains("\(table)_cascade"))
        }
        for table in ["users", "groups", "assets", "projects"] {
            #expect(triggers.contains("\(table)_id_is_fixed"))
        }
        #expect(triggers.count == 33 + 4 + 3 + 4)
        let indexes = try raw.column("SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL")
        #expect(indexes.count == 8 + 1)
    }

    @Test func migratesAnEmptyFile() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("empty.db")
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        let store = try WorkspaceStore.open(path: path, create: false)
        #expect(store.schemaVersion == WorkspaceStore.supportedSchemaVersion)
        let version = try store.importWorkspace(sampleWorkspace())
        #expect(version > 0)
        #expect(try store.exportWorkspace().workspace == sampleWorkspace())
    }

    @Test func reopeningDoesNotMigrateAgain() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let version = try WorkspaceStore.open(path: path).importWorkspace(sampleWorkspace())
        let store = try WorkspaceStore.open(path: path, create: false)
        #expect(try store.snapshotVersion() == version)
        #expect(try store.exportWorkspace().workspace == sampleWorkspace())
    }

    @Test func missingFileWithoutCreateIsNotFound() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("missing.db")
        #expect(storeError { try WorkspaceStore.open(path: path, create: false) }?.code == .notFound)
        #expect(!fileExists(path))
        #expect(storeError { try WorkspaceStore.open(path: "") }?.code == .notFound)
    }

    @Test func schemaTooNewIsRefusedAndNothingChanges() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("future.db")
        do {
            let raw = try RawDatabase(path)
            try raw.exec("CREATE TABLE future (x INTEGER); INSERT INTO future VALUES (1); PRAGMA user_version = 999;")
        }
        let before = fileBytes(path)
        let expected = StoreError.Code.schemaTooNew(found: 999, supported: WorkspaceStore.supportedSchemaVersion)

        let error = storeError { try WorkspaceStore.open(path: path) }
        #expect(error?.code == expected)
        #expect(error?.description.contains("999") == true)
        #expect(storeError { try SnapshotLoader.readWorkspace(path: path) }?.code == expected)
        #expect(storeError { try SnapshotLoader.readVersion(path: path) }?.code == expected)
        #expect(storeError { try VersionProbe(path: path).current() }?.code == expected)

        #expect(fileBytes(path) == before)
        #expect(!fileExists(path + "-wal") || fileBytes(path + "-wal").isEmpty)
        let raw = try RawDatabase(path)
        #expect(try raw.int("PRAGMA user_version") == 999)
        #expect(try raw.column("PRAGMA journal_mode") == ["delete"])
    }

    @Test func foreignDatabasesAreRefused() throws {
        let directory = try StoreScratchDirectory()
        let unversioned = directory.path("other.db")
        try RawDatabase(unversioned).exec("CREATE TABLE notes (body TEXT)")
        let before = fileBytes(unversioned)
        #expect(storeError { try WorkspaceStore.open(path: unversioned) }?.code == .notAWorkspaceStore)
        #expect(fileBytes(unversioned) == before)
        #expect(try RawDatabase(unversioned).int("SELECT count(*) FROM sqlite_schema") == 1)

        let otherApplication = directory.path("app.db")
        try RawDatabase(otherApplication).exec("CREATE TABLE t (x); PRAGMA user_version = 1; PRAGMA application_id = 42;")
        #expect(storeError { try WorkspaceStore.open(path: otherApplication) }?.code == .notAWorkspaceStore)
        #expect(storeError { try SnapshotLoader.readWorkspace(path: otherApplication) }?.code == .notAWorkspaceStore)

        let text = directory.path("text.db")
        let garbage = Data(String(repeating: "not a database\n", count: 100).utf8)
        #expect(FileManager.default.createFile(atPath: text, contents: garbage))
        #expect(storeError { try WorkspaceStore.open(path: text) }?.code == .corrupt)
        #expect(storeError { try SnapshotLoader.readWorkspace(path: text) }?.code == .corrupt)
        #expect(fileBytes(text) == garbage)
    }

    @Test func schemaAcceptsEveryEnumValue() throws {
        // The migration spells the vocabulary out literally; it must cover every case.
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        _ = try WorkspaceStore.open(path: path)
        let raw = try RawDatabase(path)
        func sql(_ table: String) throws -> String {
            try raw.column("SELECT sql FROM sqlite_schema WHERE name = '\(table)'").first ?? ""
        }
        let checks: [(String, [String])] = [
            ("workspace", Plan.allNames + Role.allNames),
            ("users", Origin.allNames + Role.allNames),
            ("groups", GroupSource.allNames + BuiltinGroup.allNames),
            ("role_mappings", Role.allNames),
            ("assets", AssetKind.allNames),
            ("asset_groups", BuiltinGroup.allNames),
            ("projects", Level.allNames),
            ("project_grants", Level.allNames),
        ]
        for (table, names) in checks {
            let definition = try sql(table)
            for name in names {
                #expect(definition.contains("'\(name)'"), "\(table) does not accept '\(name)'")
            }
        }
    }

    // MARK: Import and export

    @Test func importExportRoundTrip() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let workspace = sampleWorkspace()
        let version = try store.importWorkspace(workspace)
        let exported = try store.exportWorkspace()
        #expect(exported.version == version)
        #expect(exported.workspace == workspace)
        // Spot checks of the parts that are easy to get subtly wrong.
        #expect(exported.workspace.assets.map(\.groups) == [
            ["workspace"], ["g-data"], ["g-data", "public", "workspace_guests", "workspace", "g-dir-admins"], [],
        ])
        #expect(exported.workspace.projects.map(\.owner) == ["u-ada", nil, "u-dee"])
        #expect(exported.workspace.users[2].active == false)
        #expect(exported.workspace.users[1].role == nil)
    }

    @Test func exportIsAFixedPoint() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let first = try store.importWorkspace(sampleWorkspace())
        let exported = try store.exportWorkspace()
        let second = try store.importWorkspace(exported.workspace)
        let again = try store.exportWorkspace()
        #expect(again.workspace == exported.workspace)
        #expect(second == first)  // the diff import wrote nothing
        #expect(again.version == second)
    }

    @Test func importingAnEmptyWorkspaceClearsEverything() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        try store.importWorkspace(sampleWorkspace())
        let empty = Workspace(settings: WorkspaceSettings(plan: .community))
        try store.importWorkspace(empty)
        #expect(try store.exportWorkspace().workspace == empty)
        let raw = try RawDatabase(path)
        for table in ["users", "groups", "group_members", "assets", "asset_groups", "projects", "project_grants"] {
            #expect(try raw.int("SELECT count(*) FROM \(table)") == 0, "\(table) is not empty")
        }
    }

    @Test func repeatedListEntriesAreStoredOnce() throws {
        var workspace = sampleWorkspace()
        workspace.settings.allowedDomains.append("acme.com")
        workspace.groups[2].members += ["u-ada", "u-eve"]
        workspace.assets[2].groups += ["public", "g-data"]
        workspace.projects[0].assets.append("a-hr")
        #expect(WorkspaceDocument.validate(workspace).isEmpty)
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        try store.importWorkspace(workspace)
        let exported = try store.exportWorkspace().workspace
        #expect(exported == WorkspaceDocument.normalized(workspace))
        #expect(exported == sampleWorkspace())
    }

    @Test func invalidWorkspaceIsRejectedWithEveryIssueAndChangesNothing() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        let before = try store.exportWorkspace()
        let bytes = (fileBytes(path), fileBytes(path + "-wal"))

        var invalid = sampleWorkspace()
        invalid.users.append(User(id: "u-ada", email: "again@acme.com", origin: .manual, role: .viewer))
        invalid.users.append(User(id: "u-norole", email: "x@acme.com", origin: .manual))
        invalid.groups[2].members.append("u-ghost")
        invalid.projects[0].grants.append(.group("workspace", .canView))
        invalid.projects[1].owner = "u-nobody"
        invalid.assets[0].groups = ["g-missing"]

        let error = storeError { try store.importWorkspace(invalid) }
        guard case .invalidWorkspace(let issues)? = error?.code else {
            Issue.record("expected invalidWorkspace, got \(String(describing: error))")
            return
        }
        #expect(issues == WorkspaceDocument.validate(invalid))
        #expect(issues.count >= 6)
        let paths = Set(issues.map(\.path))
        for expected in [
            "users[5].id", "users[6].role", "groups[2].members[3]", "projects[0].grants[5].group",
            "projects[1].owner", "assets[0].groups[0]",
        ] {
            #expect(paths.contains(expected), "no issue at \(expected): \(issues)")
        }
        #expect(error?.issues == issues)

        #expect(try store.snapshotVersion() == version)
        #expect(try store.exportWorkspace() == before)
        #expect(fileBytes(path) == bytes.0)
        #expect(fileBytes(path + "-wal") == bytes.1)
    }

    @Test func aFailureHalfWayThroughAnImportRollsBackCompletely() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        let before = try store.exportWorkspace()

        // A guard added by hand makes the last project's insert fail, after every user,
        // group, asset and the earlier projects have been deleted and re-inserted.
        let raw = try RawDatabase(path)
        try raw.exec("""
            CREATE TRIGGER test_boom BEFORE INSERT ON projects WHEN NEW.id = 'p-boom'
            BEGIN SELECT RAISE(ABORT, 'boom'); END
            """)
        let schema = try schemaObjects(raw)
        var replacement = Workspace(settings: WorkspaceSettings(plan: .team))
        replacement.users = [User(id: "u-new", email: "new@acme.com", origin: .invite)]
        replacement.projects = [Project(id: "p-fine", owner: "u-new"), Project(id: "p-boom")]

        let error = storeError { try store.importChanges(replacement, mode: .replace) }
        #expect(error?.code == .constraint)
        #expect(error?.message.contains("projects[1] ('p-boom')") == true, "\(String(describing: error))")
        #expect(error?.message.contains("boom") == true)
        #expect((error?.cause as? SQLiteError)?.sql?.contains("INSERT INTO projects") == true)

        #expect(try store.snapshotVersion() == version)
        #expect(try store.exportWorkspace() == before)
        #expect(try SnapshotLoader.readWorkspace(path: path) == before)
        // The triggers and indexes the import suspended are back, exactly as they were.
        #expect(try schemaObjects(raw) == schema)
        // The store keeps working afterwards.
        try raw.exec("DROP TRIGGER test_boom")
        #expect(try store.importWorkspace(replacement) > version)
        #expect(try store.exportWorkspace().workspace == replacement)
    }

    // MARK: The snapshot version

    @Test func versionStrictlyIncreasesAcrossImports() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        var last = try store.snapshotVersion()
        for round in 0..<5 {
            var workspace = sampleWorkspace()
            if round % 2 == 1 {
                workspace.settings.viewerSeatsPaid.toggle()
                workspace.projects.removeLast()
            }
            let version = try store.importWorkspace(workspace)
            #expect(version > last)
            #expect(try store.snapshotVersion() == version)
            #expect(try SnapshotLoader.readVersion(path: path) == version)
            last = version
        }
    }

    @Test func aHandEditedRowBumpsTheVersion() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())

        let raw = try RawDatabase(path)
        try raw.exec("UPDATE users SET active = 0 WHERE id = 'u-ada'")
        let (workspace, newVersion) = try SnapshotLoader.readWorkspace(path: path)
        #expect(newVersion > version)
        #expect(try store.snapshotVersion() == newVersion)
        #expect(workspace.users[0].active == false)
    }

    struct HandEdit: Sendable, CustomTestStringConvertible {
        let table: String
        let statements: [String]
        var testDescription: String { table }
    }

    static let groupPk = "(SELECT pk FROM groups WHERE id = 'g-dir-editors')"
    static let adaPk = "(SELECT pk FROM users WHERE id = 'u-ada')"
    static let orphanPk = "(SELECT pk FROM projects WHERE id = 'p-orphan')"
    static let adminsOnlyPk = "(SELECT pk FROM assets WHERE id = 'a-admins-only')"

    static let handEdits: [HandEdit] = [
        HandEdit(table: "workspace", statements: [
            "UPDATE workspace SET viewer_seats_paid = 0",
            "DELETE FROM workspace",
            "INSERT INTO workspace (id, plan) VALUES (1, 'team')",
        ]),
        HandEdit(table: "allowed_domains", statements: [
            "INSERT INTO allowed_domains (domain) VALUES ('new.example')",
            "UPDATE allowed_domains SET domain = 'newer.example' WHERE domain = 'new.example'",
            "DELETE FROM allowed_domains WHERE domain = 'newer.example'",
        ]),
        HandEdit(table: "users", statements: [
            "INSERT INTO users (id, email, origin) VALUES ('u-new', 'new@acme.com', 'invite')",
            "UPDATE users SET role = 'editor' WHERE id = 'u-new'",
            "DELETE FROM users WHERE id = 'u-new'",
        ]),
        HandEdit(table: "groups", statements: [
            "INSERT INTO groups (id, name) VALUES ('g-new', 'New')",
            "UPDATE groups SET name = 'Renamed' WHERE id = 'g-new'",
            "DELETE FROM groups WHERE id = 'g-new'",
        ]),
        HandEdit(table: "group_members", statements: [
            "INSERT INTO group_members (group_pk, user_pk) VALUES (\(groupPk), \(adaPk))",
            "UPDATE group_members SET user_pk = (SELECT pk FROM users WHERE id = 'u-bo') WHERE group_pk = \(groupPk)",
            "DELETE FROM group_members WHERE group_pk = \(groupPk)",
        ]),
        HandEdit(table: "role_mappings", statements: [
            "INSERT INTO role_mappings (group_pk, role) VALUES (\(groupPk), 'viewer')",
            "UPDATE role_mappings SET role = 'manager' WHERE role = 'viewer'",
            "DELETE FROM role_mappings WHERE role = 'manager'",
        ]),
        HandEdit(table: "assets", statements: [
            "INSERT INTO assets (id, kind, name) VALUES ('a-new', 'secret', 'New')",
            "UPDATE assets SET name = 'Renamed' WHERE id = 'a-new'",
            "DELETE FROM assets WHERE id = 'a-new'",
        ]),
        HandEdit(table: "asset_groups", statements: [
            "INSERT INTO asset_groups (asset_pk, builtin) VALUES (\(adminsOnlyPk), 'public')",
            "UPDATE asset_groups SET builtin = 'workspace' WHERE asset_pk = \(adminsOnlyPk)",
            "DELETE FROM asset_groups WHERE asset_pk = \(adminsOnlyPk)",
        ]),
        HandEdit(table: "projects", statements: [
            "INSERT INTO projects (id) VALUES ('p-new')",
            "UPDATE projects SET workspace_access = 'can_edit' WHERE id = 'p-new'",
            "DELETE FROM projects WHERE id = 'p-new'",
        ]),
        HandEdit(table: "project_grants", statements: [
            "INSERT INTO project_grants (project_pk, user_pk, level) VALUES (\(orphanPk), \(adaPk), 'can_view')",
            "UPDATE project_grants SET level = 'can_edit' WHERE project_pk = \(orphanPk)",
            "DELETE FROM project_grants WHERE project_pk = \(orphanPk)",
        ]),
        HandEdit(table: "project_assets", statements: [
            "INSERT INTO project_assets (project_pk, asset_pk) VALUES (\(orphanPk), \(adminsOnlyPk))",
            "UPDATE project_assets SET asset_pk = (SELECT pk FROM assets WHERE id = 'a-hr') WHERE project_pk = \(orphanPk)",
            "DELETE FROM project_assets WHERE project_pk = \(orphanPk)",
        ]),
    ]

    @Test(arguments: handEdits)
    func everyInsertUpdateAndDeleteBumpsTheVersion(_ edit: HandEdit) throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        var version = try store.importWorkspace(sampleWorkspace())
        let probe = VersionProbe(path: path)
        #expect(try probe.current() == version)

        let raw = try RawDatabase(path)
        for statement in edit.statements {
            try raw.exec(statement)
            #expect(raw.changes == 1, "\(statement) changed \(raw.changes) rows")
            let next = try probe.current()
            #expect(next > version, "\(statement) did not bump the version")
            #expect(try SnapshotLoader.readVersion(path: path) == next)
            version = next
        }
        // Every edit leaves a workspace the loader reads.
        #expect(try SnapshotLoader.readWorkspace(path: path).version == version)
    }

    @Test func theVersionCannotDecreaseOrBeRemoved() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let version = try WorkspaceStore.open(path: path).importWorkspace(sampleWorkspace())
        let raw = try RawDatabase(path)
        for statement in [
            "UPDATE meta SET version = version - 1",
            "UPDATE meta SET version = 0",
            "DELETE FROM meta",
            "INSERT INTO meta (id, version) VALUES (2, 0)",
            "INSERT OR REPLACE INTO meta (id, version) VALUES (1, 0)",
            "UPDATE meta SET version = -1",
            "UPDATE meta SET version = 'high'",
        ] {
            #expect(throws: RawSQLiteError.self, "\(statement) was allowed") { try raw.exec(statement) }
        }
        #expect(try SnapshotLoader.readVersion(path: path) == version)
        try raw.exec("UPDATE meta SET version = version + 10")
        #expect(try SnapshotLoader.readVersion(path: path) == version + 10)
    }

    @Test func importKeepsTheSchemaAndOtherPeoplesTriggers() throws {
        // The importer suspends the store's own triggers and indexes for its transaction;
        // afterwards they are back as they were, and a trigger someone else added is never
        // touched: it fires for the import's rows too.
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let raw = try RawDatabase(path)
        try raw.exec("""
            CREATE TABLE audit (n INTEGER);
            CREATE TRIGGER audit_users AFTER INSERT ON users BEGIN INSERT INTO audit VALUES (NEW.pk); END;
            """)
        let schema = try schemaObjects(raw)
        #expect(schema.count > 40)
        let first = try store.importWorkspace(sampleWorkspace())
        let second = try store.importChanges(sampleWorkspace(), mode: .replace).version
        #expect(second == first + 1)
        #expect(try schemaObjects(raw) == schema)
        #expect(try raw.int("SELECT count(*) FROM audit") == 10)
        // The triggers work again after the import.
        try raw.exec("UPDATE users SET email = 'ada@acme.io' WHERE id = 'u-ada'")
        #expect(try store.snapshotVersion() == second + 1)
    }

    // MARK: Cascades

    @Test(arguments: [true, false])
    func deletingAUserCascadesToMembershipsGrantsAndOwnership(foreignKeys: Bool) throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        // With foreign keys off (the sqlite3 CLI's default) the schema's triggers cascade.
        let raw = try RawDatabase(path, foreignKeys: foreignKeys)
        try raw.exec("DELETE FROM users WHERE id = 'u-ada'")
        #expect(try raw.int("PRAGMA foreign_keys") == (foreignKeys ? 1 : 0))
        #expect(try raw.column("PRAGMA foreign_key_check").isEmpty)

        let (workspace, newVersion) = try SnapshotLoader.readWorkspace(path: path)
        #expect(newVersion > version)
        #expect(!workspace.users.contains { $0.id == "u-ada" })
        #expect(workspace.groups[2].members == ["u-eve", "u-cy"])
        #expect(workspace.projects[0].owner == nil)
        #expect(workspace.projects[0].grants.count == 5)
        #expect(WorkspaceDocument.validate(workspace).isEmpty)

        try raw.exec("DELETE FROM users WHERE id = 'u-cy'")
        let after = try SnapshotLoader.readWorkspace(path: path).workspace
        #expect(after.projects[0].grants == [.group("g-data", .fullAccess), .user("u-eve", .canExplore), .group("g-dir-admins", .canViewApp)])
    }

    @Test(arguments: [true, false])
    func deletingGroupsAssetsAndProjectsCascades(foreignKeys: Bool) throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        try WorkspaceStore.open(path: path).importWorkspace(sampleWorkspace())
        let raw = try RawDatabase(path, foreignKeys: foreignKeys)
        try raw.exec("DELETE FROM groups WHERE id IN ('g-data', 'g-dir-admins')")
        try raw.exec("DELETE FROM assets WHERE id = 'a-warehouse'")
        #expect(try raw.column("PRAGMA foreign_key_check").isEmpty)
        var workspace = try SnapshotLoader.readWorkspace(path: path).workspace
        #expect(workspace.settings.directorySync.roleMappings == [RoleMapping(group: "g-dir-editors", role: .editor)])
        #expect(workspace.assets.map(\.groups) == [[], ["public", "workspace_guests", "workspace"], []])
        #expect(workspace.projects[0].grants == [.user("u-cy", .canEdit), .user("u-eve", .canExplore), .user("u-cy", .none)])
        #expect(workspace.projects[0].assets == ["a-hr"])

        try raw.exec("DELETE FROM projects WHERE id = 'p-revenue'")
        #expect(try raw.int("SELECT count(*) FROM project_grants") == 0)
        #expect(try raw.int("SELECT count(*) FROM project_assets") == 1)
        workspace = try SnapshotLoader.readWorkspace(path: path).workspace
        #expect(workspace.projects.map(\.id) == ["p-orphan", "p-ops"])
    }

    @Test func theSchemaRejectsBadHandEdits() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let version = try WorkspaceStore.open(path: path).importWorkspace(sampleWorkspace())
        let raw = try RawDatabase(path, foreignKeys: true)
        for statement in [
            "UPDATE users SET role = 'wizard' WHERE id = 'u-ada'",
            "UPDATE users SET role = NULL WHERE id = 'u-ada'",  // a manual user needs a role
            "UPDATE users SET active = 2",
            "UPDATE users SET active = 'yes'",
            "INSERT INTO users (id, email, origin) VALUES ('bad id', 'x@acme.com', 'invite')",
            "INSERT INTO users (id, email, origin) VALUES ('u-ada', 'x@acme.com', 'invite')",
            "INSERT INTO groups (id, name) VALUES ('workspace', 'Built-in')",
            "INSERT INTO asset_groups (asset_pk, group_pk, builtin) VALUES (1, 1, 'public')",
            "INSERT INTO asset_groups (asset_pk) VALUES (1)",
            "INSERT INTO project_grants (project_pk, level) VALUES (1, 'can_view')",
            "INSERT INTO project_grants (project_pk, user_pk, level) VALUES (1, 999, 'can_view')",
            "UPDATE projects SET public_access = 'can_edit'",
            "UPDATE workspace SET plan = 'free'",
            "INSERT INTO allowed_domains (domain) VALUES ('UPPER.example')",
        ] {
            #expect(throws: RawSQLiteError.self, "\(statement) was allowed") { try raw.exec(statement) }
        }
        #expect(try SnapshotLoader.readVersion(path: path) == version)
    }

    @Test func aDanglingReferenceIsReportedAsCorrupt() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        try WorkspaceStore.open(path: path).importWorkspace(sampleWorkspace())
        let raw = try RawDatabase(path)  // foreign keys off: nothing stops this
        try raw.exec("INSERT INTO group_members (group_pk, user_pk) VALUES (1, 4242)")
        let error = storeError { try SnapshotLoader.load(path: path) }
        #expect(error?.code == .corrupt)
        #expect(error?.message.contains("group_members") == true)
        #expect(error?.message.contains("4242") == true)
    }

    // MARK: The loader

    @Test func loaderBuildsTheSnapshot() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let version = try WorkspaceStore.open(path: path).importWorkspace(sampleWorkspace())
        let snapshot = try SnapshotLoader.load(path: path)
        #expect(snapshot.version == version)
        #expect(snapshot.userCount == 5)
        #expect(snapshot.projectCount == 3)
        #expect(try SnapshotLoader.readWorkspace(path: path) == (sampleWorkspace(), version))
    }

    /// A FIFO at the database path used to hang the reloader thread: SQLite's open(2) of a
    /// FIFO waits for a writer. Special files are refused before SQLite sees them, by the
    /// loader, the version probe and the writer.
    @Test(.timeLimit(.minutes(1))) func aFIFOASocketOrADeviceIsRefusedWithoutBlocking() throws {
        let directory = try StoreScratchDirectory()
        let fifo = directory.path("fifo.db")
        #expect(mkfifo(fifo, 0o600) == 0)
        let socketPath = directory.path("socket.db")
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in socketPath.utf8.enumerated() where index < buffer.count - 1 { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        for (path, kind) in [(fifo, "a FIFO"), (socketPath, "a socket"), ("/dev/null", "a character device")] {
            for error in [
                storeError { try SnapshotLoader.load(path: path) },
                storeError { try SnapshotLoader.readVersion(path: path) },
                storeError { try VersionProbe(path: path).current() },
                storeError { try WorkspaceStore.open(path: path) },
            ] {
                #expect(error?.code == .io)
                #expect(error?.message == "\(path) is \(kind), not a database file")
            }
        }
    }

    @Test func loaderNeverCreatesOrWrites() throws {
        let directory = try StoreScratchDirectory()
        let missing = directory.path("missing.db")
        #expect(storeError { try SnapshotLoader.load(path: missing) }?.code == .notFound)
        #expect(storeError { try SnapshotLoader.readVersion(path: missing) }?.code == .notFound)
        #expect(storeError { try SnapshotLoader.readWorkspace(path: "") }?.code == .notFound)
        #expect(!fileExists(missing))
        #expect(storeError { try SnapshotLoader.load(path: directory.url.path) }?.code == .io)

        let empty = directory.path("empty.db")
        #expect(FileManager.default.createFile(atPath: empty, contents: Data()))
        #expect(storeError { try SnapshotLoader.load(path: empty) }?.code == .notInitialized)
        #expect(fileBytes(empty).isEmpty)

        let fresh = directory.path("fresh.db")
        _ = try WorkspaceStore.open(path: fresh)
        #expect(storeError { try SnapshotLoader.load(path: fresh) }?.code == .notInitialized)
        #expect(try SnapshotLoader.readVersion(path: fresh) == 0)

        // Loading a database changes none of its bytes.
        let path = directory.path("store.db")
        let version = try WorkspaceStore.open(path: path).importWorkspace(sampleWorkspace())
        let before = (fileBytes(path), fileBytes(path + "-wal"))
        #expect(try SnapshotLoader.load(path: path).version == version)
        #expect(try VersionProbe(path: path).current() == version)
        #expect(fileBytes(path) == before.0)
        #expect(fileBytes(path + "-wal") == before.1)
    }

    @Test func loaderWorksOnAReadOnlyFile() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let version = try WorkspaceStore.open(path: path).importWorkspace(sampleWorkspace())
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: path)
        #expect(try SnapshotLoader.readWorkspace(path: path) == (sampleWorkspace(), version))
    }

    @Test func loaderReadsConsistentlyWhileAnotherConnectionWrites() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())

        let writer = try RawDatabase(path, foreignKeys: true)
        try writer.exec("BEGIN IMMEDIATE")
        try writer.exec("UPDATE users SET active = 0")
        try writer.exec("DELETE FROM projects WHERE id = 'p-ops'")
        try writer.exec("INSERT INTO users (id, email, origin) VALUES ('u-zed', 'zed@acme.com', 'invite')")

        let start = ContinuousClock.now
        let during = try SnapshotLoader.readWorkspace(path: path)
        let snapshot = try SnapshotLoader.load(path: path)
        #expect(ContinuousClock.now - start < .seconds(1), "the loader waited for the writer")
        #expect(during == (sampleWorkspace(), version))
        #expect(snapshot.version == version)
        #expect(try VersionProbe(path: path).current() == version)

        try writer.exec("COMMIT")
        let (after, newVersion) = try SnapshotLoader.readWorkspace(path: path)
        #expect(newVersion > version)
        #expect(after.users.allSatisfy { $0.id == "u-zed" || !$0.active })
        #expect(after.users.last?.id == "u-zed")
        #expect(after.projects.map(\.id) == ["p-revenue", "p-orphan"])
    }

    @Test func loaderReadsConsistentlyDuringAnImport() throws {
        // A second store's import is one transaction: a reader sees all of it or none.
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        var replacement = sampleWorkspace()
        replacement.users.removeAll { $0.id == "u-cy" }
        replacement.groups[2].members = ["u-eve"]
        replacement.projects[0].grants = [.group("g-data", .canEdit)]
        let reader = try RawDatabase(path)
        try reader.exec("BEGIN")
        #expect(try reader.int("SELECT count(*) FROM users") == 5)  // the reader's snapshot starts here
        let newVersion = try store.importWorkspace(replacement)
        #expect(try reader.int("SELECT count(*) FROM users") == 5)
        #expect(try reader.int("SELECT version FROM meta") == Int64(version))
        try reader.exec("COMMIT")
        #expect(try SnapshotLoader.readWorkspace(path: path) == (replacement, newVersion))
    }

    // MARK: The version probe

    @Test func versionProbeFollowsChangesAndFiles() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let probe = VersionProbe(path: path)
        #expect(storeError { try probe.current() }?.code == .notFound)
        #expect(!fileExists(path))

        let store = try WorkspaceStore.open(path: path)
        #expect(try probe.current() == 0)
        let first = try store.importWorkspace(sampleWorkspace())
        #expect(try probe.current() == first)
        #expect(try probe.current() == first)
        let second = try store.importChanges(sampleWorkspace(), mode: .replace).version
        #expect(second > first)
        #expect(try probe.current() == second)

        // Replaced by another file (another inode): the probe follows the path.
        let other = directory.path("other.db")
        do {
            let otherStore = try WorkspaceStore.open(path: other)
            for _ in 0..<5 { try otherStore.importChanges(sampleWorkspace(), mode: .replace) }
        }  // closed: checkpointed into the main file
        let otherVersion = try SnapshotLoader.readVersion(path: other)
        #expect(otherVersion != second)
        for suffix in ["", "-wal", "-shm"] where fileExists(path + suffix) {
            try FileManager.default.removeItem(atPath: path + suffix)
        }
        #expect(storeError { try probe.current() }?.code == .notFound)
        try FileManager.default.copyItem(atPath: other, toPath: path)
        #expect(try probe.current() == otherVersion)
        _ = store
    }

    @Test func versionProbeIsUsableFromConcurrentTasks() async throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let version = try WorkspaceStore.open(path: path).importWorkspace(sampleWorkspace())
        let probe = VersionProbe(path: path)
        try await withThrowingTaskGroup(of: UInt64.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var last: UInt64 = 0
                    for _ in 0..<50 { last = try probe.current() }
                    return last
                }
            }
            for try await value in group { #expect(value == version) }
        }
    }

    // MARK: Errors

    @Test func errorsDescribeThemselves() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let error = storeError { try SnapshotLoader.load(path: path) }
        #expect(error?.description.hasPrefix("notFound: no database at ") == true)

        let store = try WorkspaceStore.open(path: path)
        var invalid = sampleWorkspace()
        invalid.users[0].role = nil
        let invalidError = storeError { try store.importWorkspace(invalid) }
        #expect(invalidError?.description.contains("users[0].role") == true, "\(String(describing: invalidError))")
    }
}

/// Every index, trigger, table and view with its definition, by name.
private func schemaObjects(_ raw: RawDatabase) throws -> [String] {
    try raw.column("SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_schema ORDER BY name")
}

// Tests of fine-grained operations (`WorkspaceStore.apply`, `authzctl apply`; issue 13).

import AuthzDocument
import AuthzEngine
import AuthzStore
import Foundation
import SQLiteTestSupport
import Testing

/// Reads JSON Lines and applies them.
@discardableResult
func apply(_ store: WorkspaceStore, _ lines: String) throws -> WorkspaceStore.ApplySummary {
    let (operations, issues) = OperationReader.read(Array(lines.utf8))
    return try store.apply(operations, issues: issues)
}

/// The problems `apply` reports (none when it succeeds).
func applyProblems(_ store: WorkspaceStore, _ lines: String) -> [String] {
    do {
        try apply(store, lines)
        return []
    } catch let error as StoreError {
        return error.operationIssues.map(\.description)
    } catch {
        return ["\(error)"]
    }
}

struct OperationCase: Sendable, CustomTestStringConvertible {
    let line: String
    let logged: [String]
    let change: @Sendable (inout Workspace) -> Void
    var testDescription: String { line }
}

@Suite("Apply: fine-grained operations")
struct ApplyTests {
    static let cases: [OperationCase] = [
        OperationCase(line: #"{"op":"set_plan","plan":"team"}"#, logged: ["workspace workspace update"]) {
            $0.settings.plan = .team
        },
        OperationCase(line: #"{"op":"set_default_domain_role","role":"member"}"#, logged: ["workspace workspace update"]) {
            $0.settings.defaultDomainRole = .viewer
        },
        OperationCase(line: #"{"op":"set_viewer_seats_paid","viewer_seats_paid":false}"#, logged: ["workspace workspace update"]) {
            $0.settings.viewerSeatsPaid = false
        },
        OperationCase(line: #"{"op":"set_directory_sync","enabled":false}"#, logged: ["workspace workspace update"]) {
            $0.settings.directorySync.enabled = false
        },
        OperationCase(line: #"{"op":"add_allowed_domain","domain":"New.Example"}"#, logged: ["allowed_domains new.example insert"]) {
            $0.settings.allowedDomains.append("new.example")
        },
        OperationCase(line: #"{"op":"remove_allowed_domain","domain":"acme.com"}"#, logged: ["allowed_domains acme.com delete"]) {
            $0.settings.allowedDomains.removeFirst()
        },
        OperationCase(
            line: #"{"op":"add_user","id":"u-fay","email":"fay@acme.com","origin":"manual","role":"viewer"}"#,
            logged: ["users u-fay insert"]
        ) {
            $0.users.append(User(id: "u-fay", email: "fay@acme.com", origin: .manual, role: .viewer))
        },
        OperationCase(
            line: #"{"op":"remove_user","user":"u-cy"}"#,
            logged: [
                "group_members g-data/u-cy delete", "project_grants p-revenue/user/u-cy delete",
                "project_grants p-revenue/user/u-cy delete", "users u-cy delete",
            ]
        ) {
            $0.users.remove(at: 2)
            $0.groups[2].members = ["u-eve", "u-ada"]
            $0.projects[0].grants.removeAll { $0.target == .user("u-cy") }
        },
        OperationCase(line: #"{"op":"set_role","user":"u-dee","role":"editor"}"#, logged: ["users u-dee update"]) {
            $0.users[3].role = .editor
        },
        OperationCase(line: #"{"op":"set_role","user":"u-dee","role":null}"#, logged: ["users u-dee update"]) {
            $0.users[3].role = nil
        },
        OperationCase(line: #"{"op":"set_email","user":"u-ada","email":"ada@acme.io"}"#, logged: ["users u-ada update"]) {
            $0.users[0].email = "ada@acme.io"
        },
        OperationCase(line: #"{"op":"set_origin","user":"u-dee","origin":"manual"}"#, logged: ["users u-dee update"]) {
            $0.users[3].origin = .manual
        },
        OperationCase(line: #"{"op":"deactivate_user","user":"u-ada"}"#, logged: ["users u-ada update"]) {
            $0.users[0].active = false
        },
        OperationCase(line: #"{"op":"reactivate_user","user":"u-cy"}"#, logged: ["users u-cy update"]) {
            $0.users[2].active = true
        },
        OperationCase(line: #"{"op":"add_group","id":"g-new","name":"New","source":"directory"}"#, logged: ["groups g-new insert"]) {
            $0.groups.append(Group(id: "g-new", name: "New", source: .directory))
        },
        OperationCase(
            line: #"{"op":"remove_group","group":"g-dir-admins"}"#,
            logged: [
                "group_members g-dir-admins/u-bo delete", "role_mappings g-dir-admins delete",
                "asset_groups a-key/g-dir-admins delete", "project_grants p-revenue/group/g-dir-admins delete",
                "groups g-dir-admins delete",
            ]
        ) {
            $0.groups.removeFirst()
            $0.settings.directorySync.roleMappings.removeFirst()
            $0.assets[2].groups.removeLast()
            $0.projects[0].grants.remove(at: 3)
        },
        OperationCase(line: #"{"op":"rename_group","group":"g-data","name":"Data"}"#, logged: ["groups g-data update"]) {
            $0.groups[2].name = "Data"
        },
        OperationCase(line: #"{"op":"add_member","group":"g-dir-editors","user":"u-bo"}"#, logged: ["group_members g-dir-editors/u-bo insert"]) {
            $0.groups[1].members.append("u-bo")
        },
        OperationCase(line: #"{"op":"remove_member","group":"g-data","user":"u-ada"}"#, logged: ["group_members g-data/u-ada delete"]) {
            $0.groups[2].members.remove(at: 1)
        },
        OperationCase(line: #"{"op":"map_directory_group","group":"g-dir-editors","role":"manager"}"#, logged: ["role_mappings g-dir-editors update"]) {
            $0.settings.directorySync.roleMappings[1].role = .manager
        },
        OperationCase(line: #"{"op":"map_directory_group","group":"g-dir-admins","role":null}"#, logged: ["role_mappings g-dir-admins delete"]) {
            $0.settings.directorySync.roleMappings.removeFirst()
        },
        OperationCase(
            line: #"{"op":"add_asset","id":"a-new","kind":"secret","name":"New","groups":["g-data","public","g-data"]}"#,
            logged: ["assets a-new insert", "asset_groups a-new/g-data insert", "asset_groups a-new/public insert"]
        ) {
            $0.assets.append(Asset(id: "a-new", kind: .secret, name: "New", groups: ["g-data", "public"]))
        },
        OperationCase(line: #"{"op":"add_asset","id":"a-new","kind":"secret","name":"New"}"#, logged: ["assets a-new insert", "asset_groups a-new/workspace insert"]) {
            $0.assets.append(Asset(id: "a-new", kind: .secret, name: "New"))
        },
        OperationCase(
            line: #"{"op":"remove_asset","asset":"a-hr"}"#,
            logged: ["asset_groups a-hr/g-data delete", "project_assets p-revenue/a-hr delete", "assets a-hr delete"]
        ) {
            $0.assets.remove(at: 1)
            $0.projects[0].assets = ["a-warehouse"]
        },
        OperationCase(line: #"{"op":"rename_asset","asset":"a-hr","name":"HR"}"#, logged: ["assets a-hr update"]) {
            $0.assets[1].name = "HR"
        },
        OperationCase(
            line: #"{"op":"set_asset_groups","asset":"a-key","groups":["g-data","public","g-dir-editors"]}"#,
            logged: [
                "asset_groups a-key/workspace_guests delete", "asset_groups a-key/workspace delete",
                "asset_groups a-key/g-dir-admins delete", "asset_groups a-key/g-dir-editors insert",
            ]
        ) {
            $0.assets[2].groups = ["g-data", "public", "g-dir-editors"]
        },
        OperationCase(line: #"{"op":"add_project","id":"p-new","owner":"u-ada","workspace_access":"can_view"}"#, logged: ["projects p-new insert"]) {
            $0.projects.append(Project(id: "p-new", owner: "u-ada", workspaceAccess: .canView))
        },
        OperationCase(
            line: #"{"op":"remove_project","project":"p-ops"}"#,
            logged: ["project_assets p-ops/a-admins-only delete", "projects p-ops delete"]
        ) {
            $0.projects.removeLast()
        },
        OperationCase(line: #"{"op":"set_owner","project":"p-orphan","owner":"u-eve"}"#, logged: ["projects p-orphan update"]) {
            $0.projects[1].owner = "u-eve"
        },
        OperationCase(line: #"{"op":"set_owner","project":"p-revenue","owner":null}"#, logged: ["projects p-revenue update"]) {
            $0.projects[0].owner = nil
        },
        OperationCase(line: #"{"op":"set_workspace_share","project":"p-orphan","level":"can_edit"}"#, logged: ["projects p-orphan update"]) {
            $0.projects[1].workspaceAccess = .canEdit
        },
        OperationCase(line: #"{"op":"set_public_share","project":"p-revenue","level":null}"#, logged: ["projects p-revenue update"]) {
            $0.projects[0].publicAccess = .none
        },
        OperationCase(line: #"{"op":"grant","project":"p-orphan","group":"g-data","level":"can_view"}"#, logged: ["project_grants p-orphan/group/g-data insert"]) {
            $0.projects[1].grants = [.group("g-data", .canView)]
        },
        OperationCase(
            line: #"{"op":"grant","project":"p-revenue","user":"u-cy","level":"can_view"}"#,
            logged: ["project_grants p-revenue/user/u-cy update", "project_grants p-revenue/user/u-cy delete"]
        ) {
            $0.projects[0].grants[0].level = .canView
            $0.projects[0].grants.removeLast()
        },
        OperationCase(line: #"{"op":"revoke","project":"p-revenue","group":"g-data"}"#, logged: ["project_grants p-revenue/group/g-data delete"]) {
            $0.projects[0].grants.remove(at: 1)
        },
        OperationCase(line: #"{"op":"add_project_asset","project":"p-orphan","asset":"a-key"}"#, logged: ["project_assets p-orphan/a-key insert"]) {
            $0.projects[1].assets = ["a-key"]
        },
        OperationCase(line: #"{"op":"remove_project_asset","project":"p-revenue","asset":"a-hr"}"#, logged: ["project_assets p-revenue/a-hr delete"]) {
            $0.projects[0].assets = ["a-warehouse"]
        },
    ]

    @Test func everyOperationHasACase() {
        let covered = Set(Self.cases.compactMap { operationName($0.line) })
        #expect(covered == Set(WorkspaceOperation.names))
    }

    private func operationName(_ line: String) -> String? {
        (try? JSONValue.parse(line))?["op"]?.string
    }

    @Test(arguments: cases)
    func eachOperationWritesAndLogsExactlyItsRows(_ operation: OperationCase) throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        let summary = try apply(store, operation.line)
        #expect(summary.previousVersion == version)
        #expect(summary.version == version + UInt64(operation.logged.count))
        #expect(try loggedChanges(store, since: version) == operation.logged)
        var expected = sampleWorkspace()
        operation.change(&expected)
        let exported = try store.exportWorkspace().workspace
        #expect(exported == expected)
        #expect(WorkspaceDocument.validate(exported).isEmpty)
        // Applying it again changes nothing more (every operation is idempotent), except
        // the ones that create or delete an entity: now it exists, or not.
        let createsOrDeletes: Set = [
            "add_user", "add_group", "add_asset", "add_project", "remove_user", "remove_group", "remove_asset",
            "remove_project",
        ]
        if let name = operationName(operation.line), !createsOrDeletes.contains(name) {
            #expect(try apply(store, operation.line).version == summary.version, "not idempotent")
        }
    }

    @Test func aBatchMayUseWhatItsEarlierLinesCreate() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let version = try store.importWorkspace(sampleWorkspace())
        let summary = try apply(store, """
            {"op":"add_user","id":"u-new","email":"new@acme.com","origin":"invite"}
            {"op":"add_group","id":"g-new","name":"New"}
            {"op":"add_member","group":"g-new","user":"u-new"}
            {"op":"add_asset","id":"a-new","kind":"git_package","name":"Pkg","groups":["g-new"]}
            {"op":"add_project","id":"p-new","owner":"u-new"}
            {"op":"grant","project":"p-new","group":"g-new","level":"can_edit"}
            {"op":"add_project_asset","project":"p-new","asset":"a-new"}
            """)
        #expect(summary.operations == 7)
        #expect(summary.version == version + 8)
        let workspace = try store.exportWorkspace().workspace
        #expect(workspace.groups.last == Group(id: "g-new", name: "New", members: ["u-new"]))
        #expect(workspace.projects.last == Project(id: "p-new", owner: "u-new", grants: [.group("g-new", .canEdit)], assets: ["a-new"]))
    }

    @Test func everyProblemIsReportedWithItsLineAndNothingIsWritten() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        let problems = applyProblems(store, """
            {"op":"deactivate_user","user":"u-ada"}
            {"op":"grant","project":"p-revenue","user":"u-ada","level":"can_fly"}
            {"op":"set_role","user":"u-nobody","role":"editor"}

            {"op":"grant","project":"p-revenue","group":"workspace","level":"can_view"}
            not json
            {"op":"add_user","id":"u-ada","email":"nope","origin":"manual"}
            {"op":"set_role","user":"u-bo","role":"editor"}
            {"op":"set_plan","plan":"professional"}
            {"op":"add_member","group":"g-data","user":"u-eve","extra":true}
            {"op":"teleport"}
            {"op":"grant","project":"p-revenue","user":"u-ada","group":"g-data","level":"none"}
            {"op":"add_group","id":"bad id","name":""}
            {"op":"map_directory_group","group":"g-data","role":"admin"}
            {"op":"set_asset_groups","asset":"a-hr","groups":["g-data","g-ghost"]}
            [1, 2]
            """)
        #expect(problems == [
            "line 2: .level: 'can_fly' is not a level (none, can_view_app, can_view, can_explore, can_edit, full_access)",
            "line 3: .user: unknown user 'u-nobody'",
            "line 5: .group: built-in group 'workspace' cannot be granted (grant a custom group; share with everyone through set_workspace_share or set_public_share)",
            "line 6: $: invalid literal, expected 'null' at column 1",
            "line 7: .id: user 'u-ada' already exists",
            "line 7: .email: email 'nope' must contain '@'",
            "line 7: .role: a manual user must have a role",
            "line 8: .role: a directory user cannot have a role while directory sync and role sync are on (the role comes from the role mappings)",
            "line 9: .plan: the professional plan has no explorer role, but it is the default domain role",
            "line 10: .extra: unknown field 'extra'",
            "line 11: .op: unknown operation 'teleport' (\(WorkspaceOperation.names.joined(separator: ", ")))",
            "line 12: $: give only one of 'user' and 'group'",
            "line 13: .id: invalid id 'bad id' (1 to 128 characters from A-Z a-z 0-9 . _ : @ -)",
            "line 14: .group: group 'g-data' is not a directory group (a role mapping must name a group whose source is 'directory')",
            "line 15: .groups[1]: unknown group 'g-ghost' (neither a custom group nor a built-in one: workspace, workspace_guests, public)",
            "line 16: $: an operation is a JSON object",
        ])
        #expect(try store.snapshotVersion() == version)
        #expect(try store.exportWorkspace().workspace == sampleWorkspace())
        #expect(try RawDatabase(path).int("SELECT count(*) FROM changes") == 0)
    }

    @Test func eachLineIsCheckedAgainstTheStateTheLinesBeforeItLeave() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        try store.importWorkspace(sampleWorkspace())
        let lines = [
            #"{"op":"set_default_domain_role","role":"viewer"}"#, #"{"op":"set_plan","plan":"professional"}"#,
        ]
        #expect(applyProblems(store, lines.reversed().joined(separator: "\n")).count == 1)
        #expect(try store.exportWorkspace().workspace.settings.plan == .enterprise)
        #expect(applyProblems(store, lines.joined(separator: "\n")) == [])
        #expect(try store.exportWorkspace().workspace.settings.plan == .professional)
        // Explorer is gone with the plan.
        #expect(applyProblems(store, #"{"op":"set_role","user":"u-ada","role":"explorer"}"#) == [
            "line 1: .role: role 'explorer' is not available on the professional plan (only on team and enterprise)"
        ])
        // Turning role sync off lets a directory user have a role.
        #expect(applyProblems(store, """
            {"op":"set_directory_sync","role_sync":false}
            {"op":"set_role","user":"u-bo","role":"editor"}
            """) == [])
        #expect(applyProblems(store, #"{"op":"set_directory_sync","role_sync":true}"#).count == 1)
    }

    @Test func aFailureInTheDatabaseRollsBackTheWholeBatch() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("store.db")
        let store = try WorkspaceStore.open(path: path)
        let version = try store.importWorkspace(sampleWorkspace())
        let raw = try RawDatabase(path)
        try raw.exec("""
            CREATE TRIGGER test_boom BEFORE INSERT ON projects WHEN NEW.id = 'p-boom'
            BEGIN SELECT RAISE(ABORT, 'boom'); END
            """)
        let problems = applyProblems(store, """
            {"op":"deactivate_user","user":"u-ada"}
            {"op":"add_project","id":"p-boom"}
            {"op":"deactivate_user","user":"u-eve"}
            """)
        #expect(problems == ["line 2: $: rejected by the database: boom"])
        #expect(try store.snapshotVersion() == version)
        #expect(try store.exportWorkspace().workspace == sampleWorkspace())
        #expect(try raw.int("SELECT count(*) FROM changes") == 0)
    }

    @Test func operationsThatChangeNothingDoNotBumpTheVersion() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let version = try store.importWorkspace(sampleWorkspace())
        let summary = try apply(store, """
            {"op":"add_member","group":"g-data","user":"u-ada"}
            {"op":"deactivate_user","user":"u-cy"}
            {"op":"set_plan","plan":"enterprise"}
            {"op":"grant","project":"p-revenue","group":"g-data","level":"full_access"}
            {"op":"revoke","project":"p-orphan","user":"u-ada"}
            {"op":"set_asset_groups","asset":"a-key","groups":["g-data","public","workspace_guests","workspace","g-dir-admins"]}
            {"op":"map_directory_group","group":"g-dir-admins","role":"admin"}
            """)
        #expect(summary.version == version)
        #expect(try store.changes(since: version)?.changes == [])
    }

    @Test func applyNeedsAnImportedWorkspace() throws {
        let directory = try StoreScratchDirectory()
        let store = try WorkspaceStore.open(path: directory.path("store.db"))
        let error = storeError { try apply(store, #"{"op":"set_plan","plan":"team"}"#) }
        #expect(error?.code == .notInitialized)
    }
}

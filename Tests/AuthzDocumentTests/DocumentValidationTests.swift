import AuthzDocument
import AuthzEngine
import Testing

// MARK: - Helpers

/// The issues of a document expected to be rejected.
func rejection(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) -> [ValidationIssue] {
    do {
        let workspace = try WorkspaceDocument.decode(json)
        Issue.record("expected the document to be rejected, got \(workspace)", sourceLocation: sourceLocation)
        return []
    } catch {
        return error.issues
    }
}

/// The paths of the issues of a document expected to be rejected.
func rejectedPaths(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) -> [String] {
    rejection(json, sourceLocation: sourceLocation).map(\.path)
}

/// A document with an enterprise workspace and the given sections (JSON fragments).
func document(
    workspace: String = #"{"plan": "enterprise"}"#, users: String? = nil, groups: String? = nil,
    assets: String? = nil, projects: String? = nil
) -> String {
    var parts = [#""workspace": \#(workspace)"#]
    if let users { parts.append(#""users": \#(users)"#) }
    if let groups { parts.append(#""groups": \#(groups)"#) }
    if let assets { parts.append(#""assets": \#(assets)"#) }
    if let projects { parts.append(#""projects": \#(projects)"#) }
    return "{" + parts.joined(separator: ", ") + "}"
}

let adminUser = #"{"id": "u-1", "email": "u-1@acme.com", "origin": "manual", "role": "admin"}"#

// MARK: - Tests

@Suite("Workspace document validation")
struct DocumentValidationTests {
    @Test func minimalDocumentUsesDefaults() throws {
        let workspace = try WorkspaceDocument.decode(#"{"workspace": {"plan": "team"}}"#)
        #expect(workspace == Workspace(settings: WorkspaceSettings(plan: .team)))
        #expect(workspace.settings.directorySync == DirectorySync(enabled: false, roleSync: true, roleMappings: []))
    }

    @Test func malformedJSONIsOneIssueAtTheRoot() throws {
        let issues = rejection("{\n  \"workspace\": {\"plan\": \"team\"}\n  \"users\": []\n}")
        #expect(issues.count == 1)
        #expect(issues.first?.path == "$")
        #expect(issues.first?.reason == "expected ',' or '}' after object member, found character '\"' at line 3 column 3")
        #expect(rejectedPaths("") == ["$"])
        #expect(rejectedPaths(#"{"workspace": {"plan": "team"}} trailing"#) == ["$"])
        #expect(throws: DocumentError.self) { _ = try WorkspaceDocument.decode([UInt8(ascii: "\""), 0xFF]) }
    }

    @Test func rootMustBeAnObject() {
        let issues = rejection("[1]")
        #expect(issues == [ValidationIssue(path: "$", reason: "expected the document to be a JSON object, found an array")])
    }

    @Test func missingRequiredFields() {
        #expect(rejectedPaths(#"{"users": []}"#) == ["workspace"])
        #expect(rejectedPaths(#"{"workspace": {}, "users": []}"#) == ["workspace.plan"])
        #expect(
            rejection(#"{"workspace": {}}"#) == [ValidationIssue(path: "workspace.plan", reason: "missing required field 'plan'")])
        #expect(rejectedPaths(document(users: "[{}]")) == ["users[0].id", "users[0].email", "users[0].origin"])
        #expect(rejectedPaths(document(groups: "[{}]")) == ["groups[0].id", "groups[0].name"])
        #expect(rejectedPaths(document(assets: "[{}]")) == ["assets[0].id", "assets[0].kind", "assets[0].name"])
        #expect(rejectedPaths(document(projects: "[{}]")) == ["projects[0].id"])
        #expect(
            rejectedPaths(document(groups: #"[{"id": "g", "name": "G"}]"#, projects: #"[{"id": "p", "grants": [{"group": "g"}]}]"#))
                == ["projects[0].grants[0].level"])
        #expect(
            rejectedPaths(document(workspace: #"{"plan": "team", "directory_sync": {"role_mappings": [{}]}}"#))
                == ["workspace.directory_sync.role_mappings[0].group", "workspace.directory_sync.role_mappings[0].role"])
    }

    @Test func unknownFieldsAtEveryLevel() {
        let json = """
            {
              "workspace": {"plan": "team", "colour": 1,
                "directory_sync": {"enabled": false, "extra": 1, "role_mappings": [{"group": "g", "role": "viewer", "x": 1}]}},
              "users": [{"id": "u-1", "email": "a@b.c", "origin": "manual", "role": "admin", "colour": "blue"}],
              "groups": [{"id": "g", "name": "G", "source": "directory", "members": [], "size": 3}],
              "assets": [{"id": "a", "kind": "secret", "name": "A", "owner": "u-1"}],
              "projects": [{"id": "p", "title": "P", "grants": [{"user": "u-1", "level": "can_view", "note": ""}]}],
              "version": 2
            }
            """
        let issues = rejection(json)
        #expect(
            issues.map(\.path) == [
                "version", "workspace.colour", "workspace.directory_sync.extra",
                "workspace.directory_sync.role_mappings[0].x", "users[0].colour", "groups[0].size", "assets[0].owner",
                "projects[0].title", "projects[0].grants[0].note",
            ])
        #expect(issues[4].reason == "unknown field 'colour' (expected one of id, email, origin, role, active)")
        #expect(issues[4].description == "users[0].colour: unknown field 'colour' (expected one of id, email, origin, role, active)")
        // A key that is not a plain name gets a quoted path.
        #expect(rejectedPaths(document(users: #"[{"id": "u-1", "email": "a@b", "origin": "invite", "a b": 1}]"#)) == [#"users[0]["a b"]"#])
        #expect(rejectedPaths(#"{"workspace": {"plan": "team"}, "a.b": 1}"#) == [#"["a.b"]"#])
    }

    @Test func repeatedKeysAreReported() {
        let issues = rejection(document(users: #"[{"id": "u-1", "id": "u-2", "email": "a@b", "origin": "invite"}]"#))
        #expect(issues == [ValidationIssue(path: "users[0].id", reason: "duplicate key 'id'")])
        #expect(rejectedPaths(#"{"workspace": {"plan": "team"}, "workspace": {"plan": "team"}}"#) == ["workspace"])
    }

    @Test func wrongTypes() {
        #expect(rejection(#"{"workspace": []}"#) == [ValidationIssue(path: "workspace", reason: "expected an object, found an array")])
        #expect(rejectedPaths(document(users: #""u-1""#)) == ["users"])
        #expect(rejectedPaths(document(users: "[5]")) == ["users[0]"])
        #expect(
            rejection(document(users: #"[{"id": 7, "email": "a@b", "origin": "invite"}]"#))
                == [ValidationIssue(path: "users[0].id", reason: "expected a string, found a number")])
        #expect(rejectedPaths(document(users: #"[{"id": "u", "email": null, "origin": "invite"}]"#)) == ["users[0].email"])
        #expect(
            rejectedPaths(document(users: #"[{"id": "u", "email": "a@b", "origin": "invite", "active": "yes"}]"#))
                == ["users[0].active"])
        #expect(rejectedPaths(document(users: #"[{"id": "u", "email": "a@b", "origin": 1}]"#)) == ["users[0].origin"])
        #expect(rejectedPaths(document(users: #"[{"id": "u", "email": "a@b", "origin": "manual", "role": 3}]"#)) == ["users[0].role"])
        #expect(rejectedPaths(document(groups: #"[{"id": "g", "name": "G", "members": "u"}]"#)) == ["groups[0].members"])
        #expect(
            rejectedPaths(document(users: "[\(adminUser)]", groups: #"[{"id": "g", "name": "G", "members": ["u-1", 5]}]"#))
                == ["groups[0].members[1]"])
        #expect(rejectedPaths(document(workspace: #"{"plan": "team", "viewer_seats_paid": 1}"#)) == ["workspace.viewer_seats_paid"])
        #expect(rejectedPaths(document(workspace: #"{"plan": "team", "allowed_domains": "acme.com"}"#)) == ["workspace.allowed_domains"])
        #expect(rejectedPaths(document(workspace: #"{"plan": "team", "directory_sync": true}"#)) == ["workspace.directory_sync"])
        #expect(
            rejectedPaths(document(workspace: #"{"plan": "team", "directory_sync": {"enabled": "true", "role_sync": 0}}"#))
                == ["workspace.directory_sync.enabled", "workspace.directory_sync.role_sync"])
        #expect(
            rejectedPaths(document(workspace: #"{"plan": "team", "directory_sync": {"role_mappings": [1]}}"#))
                == ["workspace.directory_sync.role_mappings[0]"])
        #expect(rejectedPaths(document(projects: #"[{"id": "p", "grants": {}}]"#)) == ["projects[0].grants"])
        #expect(rejectedPaths(document(projects: #"[{"id": "p", "owner": 1}]"#)) == ["projects[0].owner"])
        #expect(rejectedPaths(document(projects: #"[{"id": "p", "grants": [{"user": 1, "level": "can_view"}]}]"#)) == ["projects[0].grants[0].user"])
        #expect(rejectedPaths(document(projects: #"[{"id": "p", "grants": [{"user": null, "level": "can_view"}]}]"#)) == ["projects[0].grants[0].user"])
    }

    @Test func nullRoleAndOwnerMeanAbsent() throws {
        let workspace = try WorkspaceDocument.decode(
            document(
                users: #"[{"id": "u", "email": "a@b", "origin": "invite", "role": null}]"#,
                projects: #"[{"id": "p", "owner": null}]"#))
        #expect(workspace.users[0].role == nil)
        #expect(workspace.projects[0].owner == nil)
        #expect(rejectedPaths(document(users: #"[{"id": "u", "email": "a@b", "origin": "manual", "role": null}]"#)) == ["users[0].role"])
    }

    @Test func unknownEnumValues() {
        let issues = rejection(
            document(
                workspace: #"{"plan": "gold", "default_domain_role": "boss", "directory_sync": {"role_mappings": [{"group": "g", "role": "king"}]}}"#,
                users: #"[{"id": "u", "email": "a@b", "origin": "magic", "role": "wizard"}]"#,
                groups: #"[{"id": "g", "name": "G", "source": "ldap"}]"#,
                assets: #"[{"id": "a", "kind": "blob", "name": "A"}]"#,
                projects: #"[{"id": "p", "workspace_access": "can_fly", "public_access": "all", "grants": [{"group": "g", "level": "max"}]}]"#
            ))
        #expect(
            issues.map(\.path) == [
                "workspace.plan", "workspace.default_domain_role", "workspace.directory_sync.role_mappings[0].role",
                "users[0].origin", "users[0].role", "groups[0].source", "assets[0].kind", "projects[0].workspace_access",
                "projects[0].public_access", "projects[0].grants[0].level",
            ])
        #expect(issues[0].reason == "unknown plan 'gold' (expected one of community, professional, team, enterprise)")
        #expect(issues[4].reason == "unknown role 'wizard' (expected one of admin, manager, editor, explorer, viewer, guest)")
        #expect(
            issues[4].description
                == "users[0].role: unknown role 'wizard' (expected one of admin, manager, editor, explorer, viewer, guest)")
        #expect(
            issues[7].reason
                == "unknown level 'can_fly' (expected one of none, can_view_app, can_view, can_explore, can_edit, full_access)")
        // A role mapping with an unknown source group is not also blamed for the source.
        #expect(!issues.contains { $0.path == "workspace.directory_sync.role_mappings[0].group" })
    }

    @Test func legacyRoleNamesAreNormalisedEverywhere() throws {
        let workspace = try WorkspaceDocument.decode(
            document(
                workspace: #"{"plan": "team", "default_domain_role": "author", "directory_sync": {"enabled": true, "role_mappings": [{"group": "g", "role": "member"}]}}"#,
                users: #"[{"id": "u", "email": "a@b", "origin": "manual", "role": "member"}, {"id": "v", "email": "v@b", "origin": "invite", "role": "author"}]"#,
                groups: #"[{"id": "g", "name": "G", "source": "directory"}]"#))
        #expect(workspace.settings.defaultDomainRole == .editor)
        #expect(workspace.settings.directorySync.roleMappings == [RoleMapping(group: "g", role: .viewer)])
        #expect(workspace.users.map(\.role) == [.viewer, .editor])
        #expect(WorkspaceDocument.encode(workspace).contains("\"role\": \"viewer\""))
        #expect(!WorkspaceDocument.encode(workspace).contains("\"member\""))
        #expect(!WorkspaceDocument.encode(workspace).contains("author"))
    }

    @Test func duplicateIdsArePerKindAndReportedAtTheLaterEntry() {
        let issues = rejection(
            document(
                users: "[\(adminUser), \(adminUser), \(adminUser)]",
                groups: #"[{"id": "u-1", "name": "G"}, {"id": "u-1", "name": "G2"}]"#,
                assets: #"[{"id": "u-1", "kind": "secret", "name": "A"}, {"id": "u-1", "kind": "secret", "name": "B"}]"#,
                projects: #"[{"id": "u-1"}, {"id": "p"}, {"id": "u-1"}]"#))
        #expect(issues.map(\.path) == ["users[1].id", "users[2].id", "groups[1].id", "assets[1].id", "projects[2].id"])
        #expect(issues[0].reason == "duplicate user id 'u-1' (first defined at users[0])")
        #expect(issues[4].reason == "duplicate project id 'u-1' (first defined at projects[0])")
    }

    @Test func unknownReferences() {
        let issues = rejection(
            document(
                workspace: #"{"plan": "team", "directory_sync": {"role_mappings": [{"group": "g-nope", "role": "admin"}]}}"#,
                users: "[\(adminUser)]",
                groups: #"[{"id": "g", "name": "G", "members": ["u-1", "u-2"]}]"#,
                assets: #"[{"id": "a", "kind": "secret", "name": "A", "groups": ["workspace", "g", "g-x"]}]"#,
                projects: #"""
                    [{"id": "p", "owner": "u-9", "assets": ["a", "a-x"],
                      "grants": [{"user": "u-1", "level": "can_view"}, {"user": "u-3", "level": "can_view"}, {"group": "g-y", "level": "can_edit"}]}]
                    """#))
        #expect(
            issues.map(\.path) == [
                "workspace.directory_sync.role_mappings[0].group", "groups[0].members[1]", "assets[0].groups[2]",
                "projects[0].owner", "projects[0].grants[1].user", "projects[0].grants[2].group", "projects[0].assets[1]",
            ])
        #expect(issues[1].reason == "unknown user 'u-2'")
        #expect(issues[2].reason.hasPrefix("unknown group 'g-x'"))
        #expect(issues[6].reason == "unknown asset 'a-x'")
    }

    @Test func roleMappingsNeedDirectoryGroups() {
        let issues = rejection(
            document(
                workspace: #"{"plan": "team", "directory_sync": {"role_mappings": [{"group": "g-ws", "role": "admin"}, {"group": "g-dir", "role": "admin"}, {"group": "workspace", "role": "viewer"}]}}"#,
                groups: #"[{"id": "g-ws", "name": "W"}, {"id": "g-dir", "name": "D", "source": "directory"}]"#))
        #expect(
            issues.map(\.path) == [
                "workspace.directory_sync.role_mappings[0].group", "workspace.directory_sync.role_mappings[2].group",
            ])
        #expect(
            issues[0].reason
                == "group 'g-ws' has source 'workspace'; a role mapping must name a group whose source is 'directory'")
    }

    @Test func builtInGroupsCannotBeDefinedOrGranted() {
        let issues = rejection(
            document(
                groups: #"[{"id": "workspace", "name": "W"}, {"id": "workspace_guests", "name": "G"}, {"id": "public", "name": "P"}, {"id": "g", "name": "G"}]"#,
                assets: #"[{"id": "a", "kind": "secret", "name": "A", "groups": ["workspace", "workspace_guests", "public", "g"]}]"#,
                projects: #"[{"id": "p", "grants": [{"group": "public", "level": "can_view"}, {"group": "workspace", "level": "can_view"}, {"group": "g", "level": "can_view"}]}]"#
            ))
        #expect(
            issues.map(\.path) == [
                "groups[0].id", "groups[1].id", "groups[2].id", "projects[0].grants[0].group", "projects[0].grants[1].group",
            ])
        #expect(issues[0].reason == "'workspace' is a built-in group and cannot be defined")
        #expect(issues[3].reason.hasPrefix("built-in group 'public' cannot be granted"))
    }

    @Test func grantsNameExactlyOneTarget() {
        let issues = rejection(
            document(
                users: "[\(adminUser)]", groups: #"[{"id": "g", "name": "G"}]"#,
                projects: #"[{"id": "p", "grants": [{"user": "u-1", "group": "g", "level": "can_view"}, {"level": "can_view"}]}]"#
            ))
        #expect(
            issues == [
                ValidationIssue(
                    path: "projects[0].grants[0]", reason: "a grant must name exactly one of 'user' or 'group', not both"),
                ValidationIssue(path: "projects[0].grants[1]", reason: "a grant must name a 'user' or a 'group'"),
            ])
    }

    @Test(arguments: [Plan.community, .professional])
    func explorerNeedsAPlanThatHasIt(plan: Plan) {
        let issues = rejection(
            document(
                workspace: #"{"plan": "\#(plan.name)", "default_domain_role": "explorer", "directory_sync": {"role_mappings": [{"group": "g", "role": "explorer"}]}}"#,
                users: #"[{"id": "u", "email": "a@b", "origin": "manual", "role": "explorer"}]"#,
                groups: #"[{"id": "g", "name": "G", "source": "directory"}]"#))
        #expect(
            issues.map(\.path) == [
                "workspace.default_domain_role", "workspace.directory_sync.role_mappings[0].role", "users[0].role",
            ])
        #expect(
            issues[2].reason == "role 'explorer' is not available on the \(plan.name) plan (only on team and enterprise)")
    }

    @Test(arguments: [Plan.team, .enterprise])
    func explorerIsFineOnTeamAndEnterprise(plan: Plan) throws {
        let workspace = try WorkspaceDocument.decode(
            document(
                workspace: #"{"plan": "\#(plan.name)", "default_domain_role": "explorer"}"#,
                users: #"[{"id": "u", "email": "a@b", "origin": "manual", "role": "explorer"}]"#))
        #expect(workspace.users[0].role == .explorer)
    }

    @Test func manualUsersNeedARole() {
        let issues = rejection(document(users: #"[{"id": "u", "email": "a@b", "origin": "manual"}]"#))
        #expect(issues == [ValidationIssue(path: "users[0].role", reason: "a manual user must have a role")])
    }

    @Test func directoryUsersCannotHaveARoleUnderRoleSync() throws {
        let user = #"[{"id": "u", "email": "a@b", "origin": "directory", "role": "admin"}]"#
        #expect(rejectedPaths(document(workspace: #"{"plan": "team", "directory_sync": {"enabled": true}}"#, users: user)) == ["users[0].role"])
        #expect(
            rejectedPaths(document(workspace: #"{"plan": "team", "directory_sync": {"enabled": true, "role_sync": true}}"#, users: user))
                == ["users[0].role"])
        // Allowed when sync is off, role sync is off, or there is no directory_sync at all.
        for settings in [
            #"{"plan": "team", "directory_sync": {"enabled": false}}"#,
            #"{"plan": "team", "directory_sync": {"enabled": true, "role_sync": false}}"#,
            #"{"plan": "team"}"#,
        ] {
            let workspace = try WorkspaceDocument.decode(document(workspace: settings, users: user))
            #expect(workspace.users[0].role == .admin)
        }
        // Other origins may carry a role under role sync.
        _ = try WorkspaceDocument.decode(
            document(
                workspace: #"{"plan": "team", "directory_sync": {"enabled": true}}"#,
                users: #"[{"id": "u", "email": "a@b", "origin": "invite", "role": "editor"}]"#))
    }

    @Test func publicAccessRange() throws {
        let issues = rejection(document(projects: #"[{"id": "p", "public_access": "can_edit"}]"#))
        #expect(
            issues == [
                ValidationIssue(
                    path: "projects[0].public_access", reason: "public_access must be 'none' or 'can_view_app', not 'can_edit'")
            ])
        #expect(rejectedPaths(document(projects: #"[{"id": "p", "public_access": "can_view"}]"#)) == ["projects[0].public_access"])
        let workspace = try WorkspaceDocument.decode(document(projects: #"[{"id": "p", "public_access": "can_view_app"}]"#))
        #expect(workspace.projects[0].publicAccess == .canViewApp)
    }

    @Test func idSyntax() {
        let long = String(repeating: "x", count: 129)
        let issues = rejection(
            document(
                users: #"[{"id": "u 1/evil", "email": "u 1/evil@acme.com", "origin": "invite"}, {"id": "", "email": "a@b", "origin": "invite"}, {"id": "\#(long)", "email": "a@b", "origin": "invite"}]"#,
                groups: #"[{"id": "g!", "name": "G", "members": ["bad id"]}]"#,
                assets: #"[{"id": "a", "kind": "secret", "name": "A", "groups": ["é"]}]"#,
                projects: #"[{"id": "p", "owner": "", "assets": ["a/b"], "grants": [{"user": "u\n", "level": "none"}]}]"#))
        #expect(
            issues.map(\.path) == [
                "users[0].id", "users[1].id", "users[2].id", "groups[0].id", "groups[0].members[0]", "assets[0].groups[0]",
                "projects[0].owner", "projects[0].grants[0].user", "projects[0].assets[0]",
            ])
        #expect(issues[0].reason == "invalid id 'u 1/evil' (ids are 1 to 128 characters from A-Z a-z 0-9 . _ : @ -)")
        #expect(issues[7].reason.hasPrefix(#"invalid id 'u\n'"#))
        // The longest valid id and every allowed character.
        let ok = String(repeating: "y", count: 128)
        #expect(throws: Never.self) {
            _ = try WorkspaceDocument.decode(
                document(users: #"[{"id": "\#(ok)", "email": "a@b", "origin": "invite"}, {"id": "Az09._:@-", "email": "a@b", "origin": "invite"}]"#))
        }
    }

    @Test func emailsAndNames() {
        let issues = rejection(
            document(
                users: #"[{"id": "u", "email": "", "origin": "invite"}, {"id": "v", "email": "nobody", "origin": "invite"}]"#,
                groups: #"[{"id": "g", "name": ""}]"#, assets: #"[{"id": "a", "kind": "secret", "name": ""}]"#))
        #expect(issues.map(\.path) == ["users[0].email", "users[1].email", "groups[0].name", "assets[0].name"])
        #expect(issues[0].reason == "email must not be empty")
        #expect(issues[1].reason == "email 'nobody' must contain '@'")
        #expect(issues[2].reason == "name must not be empty")
    }

    @Test func allowedDomains() throws {
        let workspace = try WorkspaceDocument.decode(
            document(workspace: #"{"plan": "team", "allowed_domains": ["Acme.COM", "b.io", "acme.com", "B.IO"]}"#))
        #expect(workspace.settings.allowedDomains == ["acme.com", "b.io"])
        let issues = rejection(
            document(workspace: #"{"plan": "team", "allowed_domains": ["ok.io", "", "a@b.io", "a b.io", "tab\t.io", 7]}"#))
        #expect(
            issues.map(\.path) == [
                "workspace.allowed_domains[5]", "workspace.allowed_domains[1]", "workspace.allowed_domains[2]",
                "workspace.allowed_domains[3]", "workspace.allowed_domains[4]",
            ])
        #expect(issues[1].reason == "an allowed domain must not be empty")
        #expect(issues[2].reason == "allowed domain 'a@b.io' must not contain '@' (write the domain only)")
        #expect(issues[3].reason == "allowed domain 'a b.io' must not contain whitespace")
    }

    @Test func listsAreDeduplicatedKeepingTheFirst() throws {
        let workspace = try WorkspaceDocument.decode(
            document(
                users: #"[\#(adminUser), {"id": "u-2", "email": "b@b", "origin": "invite"}]"#,
                groups: #"[{"id": "g", "name": "G", "members": ["u-2", "u-1", "u-2", "u-1"]}]"#,
                assets: #"""
                    [{"id": "a", "kind": "secret", "name": "A", "groups": ["g", "workspace", "g"]},
                     {"id": "b", "kind": "git_package", "name": "B"}]
                    """#,
                projects: #"""
                    [{"id": "p", "assets": ["b", "a", "b"],
                      "grants": [{"user": "u-2", "level": "can_view"}, {"user": "u-2", "level": "can_view"}, {"user": "u-2", "level": "can_edit"}]}]
                    """#))
        #expect(workspace.groups[0].members == ["u-2", "u-1"])
        #expect(workspace.assets[0].groups == ["g", "workspace"])
        #expect(workspace.projects[0].assets == ["b", "a"])
        #expect(workspace.projects[0].grants == [.user("u-2", .canView), .user("u-2", .canView), .user("u-2", .canEdit)])
        // A problem in a repeated entry is reported once, at the first occurrence.
        #expect(
            rejectedPaths(document(groups: #"[{"id": "g", "name": "G", "members": ["u-x", "u-x"]}]"#))
                == ["groups[0].members[0]"])
    }

    @Test func assetGroupsDefault() throws {
        let workspace = try WorkspaceDocument.decode(
            document(assets: #"[{"id": "a", "kind": "secret", "name": "A"}, {"id": "b", "kind": "external_file", "name": "B", "groups": []}]"#))
        #expect(workspace.assets[0].groups == ["workspace"])
        #expect(workspace.assets[1].groups == [])
    }

    @Test func severalProblemsAreAllReported() {
        let json = """
            {"workspace": {"plan": "enterprise"},
             "users": [{"id": "u-1", "email": "u-1@acme.com", "origin": "manual"},
                       {"id": "u-2", "email": "u-2@acme.com", "origin": "manual", "role": "wizard"}],
             "assets": [{"id": "a", "kind": "data_connection", "name": "A", "groups": ["g-missing"]}]}
            """
        #expect(rejectedPaths(json) == ["users[0].role", "users[1].role", "assets[0].groups[0]"])
    }

    @Test func structurallyBrokenEntriesStillGetSemanticChecks() {
        let issues = rejection(
            document(
                workspace: #"{"plan": "community", "extra": true}"#,
                users: #"""
                    [{"id": "u-1", "email": 5, "origin": "manual", "role": "explorer", "nick": "x"},
                     {"id": "u-1", "email": "x@y", "origin": "manual"}]
                    """#,
                groups: #"[{"id": "g", "name": 1, "members": ["u-1", "u-404"]}]"#,
                projects: #"[{"id": 3, "owner": "u-404", "public_access": "full_access"}]"#))
        #expect(
            issues.map(\.path) == [
                "workspace.extra",
                "users[0].nick", "users[0].email", "users[0].role",
                "users[1].id", "users[1].role",
                "groups[0].name", "groups[0].members[1]",
                "projects[0].id", "projects[0].owner", "projects[0].public_access",
            ])
    }

    @Test func unreadableIdsDoNotCauseFalseUnknownReferences() {
        // users[1] has no readable id, so "u-2" might be it: only the real problem is reported.
        let issues = rejection(
            document(
                users: #"[\#(adminUser), {"id": 2, "email": "b@b", "origin": "invite"}]"#,
                groups: #"[{"id": "g", "name": "G", "members": ["u-1", "u-2"]}]"#))
        #expect(issues.map(\.path) == ["users[1].id"])
        #expect(rejectedPaths(document(users: "{}", projects: #"[{"id": "p", "owner": "u-1"}]"#)) == ["users"])
    }

    @Test func documentErrorDescription() {
        let single = DocumentError(issues: [ValidationIssue(path: "users[0].role", reason: "a manual user must have a role")])
        #expect(single.description == "invalid workspace document: users[0].role: a manual user must have a role")
        let several = DocumentError(issues: [
            ValidationIssue(path: "a", reason: "x"), ValidationIssue(path: "b", reason: "y"),
        ])
        #expect(several.description == "invalid workspace document: 2 problems\n  a: x\n  b: y")
        #expect(several.paths == ["a", "b"])
    }
}

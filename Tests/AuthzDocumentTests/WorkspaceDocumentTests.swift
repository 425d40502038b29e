import AuthzDocument
import AuthzEngine
import Foundation
import Testing

// MARK: - Shared files

/// The directory containing Package.swift, found from this file's path.
private func packageRoot(sourceLocation: SourceLocation = #_sourceLocation) throws -> URL {
    var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while directory.path != "/" {
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
            return directory
        }
        directory = directory.deletingLastPathComponent()
    }
    Issue.record("no Package.swift above \(#filePath)", sourceLocation: sourceLocation)
    throw CocoaError(.fileNoSuchFile)
}

/// `../shared/<name>` next to the package root; records a failure when it is missing.
private func sharedDirectory(_ name: String) throws -> URL {
    let url = try packageRoot().deletingLastPathComponent().appendingPathComponent("shared").appendingPathComponent(name)
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else {
        Issue.record("missing directory \(url.path)")
        throw CocoaError(.fileNoSuchFile)
    }
    return url
}

/// Every conformance file with its parsed content.
private func conformanceFiles() throws -> [(name: String, value: JSONValue)] {
    let directory = try sharedDirectory("conformance")
    let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        .filter { $0.hasSuffix(".json") }
        .sorted()
    #expect(!names.isEmpty, "no conformance files in \(directory.path)")
    return try names.map { name in
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        return (name, try JSONValue.parse(data))
    }
}

/// The first ```json block of spec/WORKSPACE-FORMAT.md.
private func specExample() throws -> String {
    let url = try sharedDirectory("spec").appendingPathComponent("WORKSPACE-FORMAT.md")
    let text = try String(contentsOf: url, encoding: .utf8)
    guard let start = text.range(of: "```json\n"),
        let end = text.range(of: "\n```", range: start.upperBound..<text.endIndex)
    else {
        Issue.record("no ```json block in \(url.path)")
        throw CocoaError(.fileReadCorruptFile)
    }
    return String(text[start.upperBound..<end.lowerBound])
}

/// The spec example with the directory group its second role mapping names.
private func repairedSpecExample() throws -> JSONValue {
    var document = try #require(try JSONValue.parse(try specExample()).object)
    var groups = try #require(document["groups"]?.array)
    groups.append(["id": "g-hex-editors", "name": "Hex Editors", "source": "directory", "members": []])
    document["groups"] = .array(groups)
    return .object(document)
}

/// decode → encode → decode is a fixed point, for pretty and compact output.
private func expectFixedPoint(_ document: JSONValue, _ label: String) throws {
    let first = try WorkspaceDocument.decode(document)
    #expect(WorkspaceDocument.validate(first) == [], "\(label)")
    for pretty in [true, false] {
        let text = WorkspaceDocument.encode(first, pretty: pretty)
        let second = try WorkspaceDocument.decode(text)
        #expect(second == first, "\(label)")
        #expect(WorkspaceDocument.encode(second, pretty: pretty) == text, "\(label)")
    }
    #expect(try JSONValue.parse(WorkspaceDocument.encode(first)) == WorkspaceDocument.encodeValue(first), "\(label)")
}

// MARK: - Tests

@Suite("Workspace document encoding and round trips")
struct WorkspaceDocumentTests {
    /// The example of WORKSPACE-FORMAT.md maps `g-hex-editors`, a group it does not define,
    /// which the same page's validation rules reject ("a reference to an id that does not
    /// exist (... role mapping)"). The tests check that rejection and use the example with
    /// that group added.
    @Test func specExampleNamesAnUndefinedGroup() throws {
        let issues = rejection(try specExample())
        #expect(
            issues == [
                ValidationIssue(
                    path: "workspace.directory_sync.role_mappings[1].group", reason: "unknown group 'g-hex-editors'")
            ])
    }

    @Test func specExampleDecodes() throws {
        let workspace = try WorkspaceDocument.decode(try repairedSpecExample())
        #expect(workspace.settings.plan == .enterprise)
        #expect(workspace.settings.allowedDomains == ["acme.com"])
        #expect(workspace.settings.directorySync.enabled)
        #expect(workspace.settings.directorySync.roleMappings.count == 2)
        #expect(workspace.users.map(\.id) == ["u-ada", "u-bo", "u-cy"])
        #expect(workspace.users[1].role == nil)
        #expect(workspace.groups[0].source == .directory)
        #expect(workspace.assets[0].groups == ["workspace"])
        #expect(workspace.assets[2].groups == ["workspace", "workspace_guests"])
        #expect(workspace.projects[0].grants == [.user("u-cy", .canEdit), .group("g-data-team", .fullAccess)])
        #expect(workspace.projects[0].workspaceAccess == .canView)
    }

    @Test func specExampleIsAFixedPoint() throws {
        try expectFixedPoint(try repairedSpecExample(), "WORKSPACE-FORMAT.md example")
    }

    @Test func conformanceWorkspacesAreFixedPoints() throws {
        var count = 0
        for file in try conformanceFiles() {
            guard let document = file.value["workspace"] else { continue }
            try expectFixedPoint(document, file.name)
            count += 1
        }
        #expect(count > 0, "no conformance file has a workspace")
    }

    /// Not a replacement for the conformance runner: a quick check that every invalid
    /// document is rejected with exactly the expected paths.
    @Test func conformanceInvalidDocumentsAreRejected() throws {
        let file = try #require(try conformanceFiles().first { $0.name == "invalid-documents.json" })
        let cases = try #require(file.value["invalid_documents"]?.array)
        #expect(!cases.isEmpty)
        for testCase in cases {
            let name = testCase["name"]?.string ?? "?"
            let document = try #require(testCase["workspace"], "\(name)")
            let expected = Set((testCase["errors"]?.array ?? []).compactMap(\.string))
            do {
                _ = try WorkspaceDocument.decode(document)
                Issue.record("\(name): accepted")
            } catch {
                #expect(Set(error.paths) == expected, "\(name): \(error)")
            }
        }
    }

    @Test func canonicalEncoding() throws {
        let workspace = Workspace(
            settings: WorkspaceSettings(plan: .team, allowedDomains: ["acme.com"]),
            users: [
                User(id: "u-1", email: "a@acme.com", origin: .manual, role: .admin),
                User(id: "u-2", email: "b@x.io", origin: .invite),
            ],
            groups: [Group(id: "g", name: "G", members: ["u-1"])],
            assets: [Asset(id: "a", kind: .secret, name: "A")],
            projects: [
                Project(id: "p", owner: "u-1", grants: [.group("g", .canEdit)], assets: ["a"]),
                Project(id: "q"),
            ])
        #expect(WorkspaceDocument.validate(workspace) == [])
        let compact = WorkspaceDocument.encode(workspace, pretty: false)
        #expect(
            compact
                == #"{"workspace":{"plan":"team","allowed_domains":["acme.com"],"default_domain_role":"viewer","viewer_seats_paid":false,"directory_sync":{"enabled":false,"role_sync":true,"role_mappings":[]}},"users":[{"id":"u-1","email":"a@acme.com","origin":"manual","role":"admin","active":true},{"id":"u-2","email":"b@x.io","origin":"invite","active":true}],"groups":[{"id":"g","name":"G","source":"workspace","members":["u-1"]}],"assets":[{"id":"a","kind":"secret","name":"A","groups":["workspace"]}],"projects":[{"id":"p","owner":"u-1","workspace_access":"none","public_access":"none","grants":[{"group":"g","level":"can_edit"}],"assets":["a"]},{"id":"q","workspace_access":"none","public_access":"none","grants":[],"assets":[]}]}"#
        )
        let pretty = WorkspaceDocument.encode(workspace)
        #expect(pretty.hasPrefix("{\n  \"workspace\": {\n    \"plan\": \"team\",\n    \"allowed_domains\": [\n      \"acme.com\"\n    ],"))
        #expect(!pretty.hasSuffix("\n"))
        #expect(try WorkspaceDocument.decode(pretty) == workspace)
        #expect(try WorkspaceDocument.decode(compact) == workspace)
    }

    @Test func emptyAssetGroupsSurviveTheRoundTrip() throws {
        let workspace = Workspace(
            settings: WorkspaceSettings(plan: .community),
            assets: [Asset(id: "a", kind: .gitPackage, name: "A", groups: [])])
        let text = WorkspaceDocument.encode(workspace, pretty: false)
        #expect(text.contains(#""groups":[]"#))
        #expect(try WorkspaceDocument.decode(text) == workspace)
    }

    @Test func normalizedDeduplicatesLists() throws {
        let workspace = Workspace(
            settings: WorkspaceSettings(plan: .team, allowedDomains: ["Acme.com", "acme.com", "b.io"]),
            users: [User(id: "u", email: "u@acme.com", origin: .domain)],
            groups: [Group(id: "g", name: "G", members: ["u", "u"])],
            assets: [Asset(id: "a", kind: .secret, name: "A", groups: ["g", "public", "g"])],
            projects: [Project(id: "p", grants: [.user("u", .canView), .user("u", .canView)], assets: ["a", "a"])])
        let normalized = WorkspaceDocument.normalized(workspace)
        #expect(normalized.settings.allowedDomains == ["acme.com", "b.io"])
        #expect(normalized.groups[0].members == ["u"])
        #expect(normalized.assets[0].groups == ["g", "public"])
        #expect(normalized.projects[0].assets == ["a"])
        #expect(normalized.projects[0].grants.count == 2)
        #expect(WorkspaceDocument.validate(normalized) == [])
        #expect(try WorkspaceDocument.decode(WorkspaceDocument.encode(workspace)) == normalized)
        // The model itself only fails on the upper-case domain; repeats are not problems.
        #expect(WorkspaceDocument.validate(workspace).map(\.path) == ["workspace.allowed_domains[0]"])
    }

    @Test func validateReportsModelProblemsWithModelIndexes() {
        let workspace = Workspace(
            settings: WorkspaceSettings(
                plan: .professional, allowedDomains: ["ok.io", "Bad.io", ""], defaultDomainRole: .explorer,
                directorySync: DirectorySync(
                    enabled: true,
                    roleMappings: [
                        RoleMapping(group: "g-ws", role: .admin), RoleMapping(group: "g-dir", role: .explorer),
                        RoleMapping(group: "nope", role: .viewer),
                    ])),
            users: [
                User(id: "u-1", email: "a@b", origin: .manual),
                User(id: "u-2", email: "b@b", origin: .directory, role: .editor),
                User(id: "u-1", email: "", origin: .invite, role: .explorer),
                User(id: "bad id", email: "x@y", origin: .invite),
            ],
            groups: [
                Group(id: "g-ws", name: "W", members: ["u-1", "u-9"]),
                Group(id: "g-dir", name: "", source: .directory),
                Group(id: "public", name: "P"),
            ],
            assets: [Asset(id: "a", kind: .secret, name: "A", groups: ["g-ws", "workspace_guests", "g-none"])],
            projects: [
                Project(
                    id: "p", owner: "u-404", publicAccess: .fullAccess,
                    grants: [.user("u-2", .canEdit), .group("workspace", .canView), .group("g-zzz", .canView)],
                    assets: ["a", "b"]),
                Project(id: "p"),
            ])
        let issues = WorkspaceDocument.validate(workspace)
        #expect(
            issues.map(\.path) == [
                "workspace.allowed_domains[1]", "workspace.allowed_domains[2]", "workspace.default_domain_role",
                "workspace.directory_sync.role_mappings[0].group", "workspace.directory_sync.role_mappings[1].role",
                "workspace.directory_sync.role_mappings[2].group",
                "users[0].role",
                "users[1].role",
                "users[2].id", "users[2].email", "users[2].role",
                "users[3].id",
                "groups[0].members[1]",
                "groups[1].name",
                "groups[2].id",
                "assets[0].groups[2]",
                "projects[0].owner", "projects[0].public_access", "projects[0].grants[1].group",
                "projects[0].grants[2].group", "projects[0].assets[1]",
                "projects[1].id",
            ])
        #expect(issues[1].reason == "an allowed domain must not be empty")
        #expect(issues[0].reason == "allowed domain 'Bad.io' must be lower-case")
        #expect(WorkspaceDocument.validate(Workspace(settings: WorkspaceSettings(plan: .team))) == [])
    }

    @Test func generatedWorkspacesRoundTrip() throws {
        var random = SplitMix64(seed: 0x5EED)
        for _ in 0..<200 {
            let workspace = randomWorkspace(&random)
            #expect(WorkspaceDocument.validate(workspace) == [])
            let text = WorkspaceDocument.encode(workspace, pretty: random.next() % 2 == 0)
            #expect(try WorkspaceDocument.decode(text) == workspace)
        }
    }

    @Test func decodeAcceptsBytesStringsAndValues() throws {
        let text = #"{"workspace": {"plan": "team"}, "users": [{"id": "u", "email": "ü@exämple.com", "origin": "invite"}]}"#
        let fromString = try WorkspaceDocument.decode(text)
        #expect(try WorkspaceDocument.decode(Array(text.utf8)) == fromString)
        #expect(try WorkspaceDocument.decode(Data(text.utf8)) == fromString)
        #expect(try WorkspaceDocument.decode(try JSONValue.parse(text)) == fromString)
        #expect(fromString.users[0].email == "ü@exämple.com")
    }
}

// MARK: - Generator

/// A small deterministic PRNG.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A valid workspace with random content and no repeated list entries.
func randomWorkspace(_ random: inout SplitMix64) -> Workspace {
    func pick<T>(_ values: [T]) -> T { values[Int(random.next() % UInt64(values.count))] }
    func subset(_ values: [String]) -> [String] { values.filter { _ in random.next() % 3 == 0 } }
    func count(_ limit: UInt64) -> Int { Int(random.next() % (limit + 1)) }

    let plan = pick(Plan.allCases)
    let roles = Role.allCases.filter { plan.hasExplorerRole || $0 != .explorer }
    let syncEnabled = random.next() % 2 == 0
    let roleSync = random.next() % 2 == 0
    let userIds = (0..<count(6)).map { "u-\($0)" }
    let users = userIds.map { id -> User in
        let origin = pick(Origin.allCases)
        var role: Role? = random.next() % 2 == 0 ? pick(roles) : nil
        if origin == .manual && role == nil { role = pick(roles) }
        if origin == .directory && syncEnabled && roleSync { role = nil }
        return User(id: id, email: "\(id)@Example.com", origin: origin, role: role, active: random.next() % 4 != 0)
    }
    let groups = (0..<count(4)).map { index in
        Group(id: "g:\(index)", name: "Group \"\(index)\" ✓", source: pick(GroupSource.allCases), members: subset(userIds))
    }
    let directoryGroups = groups.filter { $0.source == .directory }.map(\.id)
    let mappings = subset(directoryGroups).map { RoleMapping(group: $0, role: pick(roles)) }
    let assignable = groups.map(\.id) + BuiltinGroup.allNames
    let assets = (0..<count(4)).map { index in
        Asset(id: "a.\(index)", kind: pick(AssetKind.allCases), name: "Asset \(index)\n", groups: subset(assignable))
    }
    let projects = (0..<count(4)).map { index -> Project in
        var grants: [Grant] = []
        for _ in 0..<count(3) {
            if !userIds.isEmpty && (groups.isEmpty || random.next() % 2 == 0) {
                grants.append(.user(pick(userIds), pick(Level.allCases)))
            } else if !groups.isEmpty {
                grants.append(.group(pick(groups).id, pick(Level.allCases)))
            }
        }
        return Project(
            id: "P_\(index)", owner: userIds.isEmpty || random.next() % 3 == 0 ? nil : pick(userIds),
            workspaceAccess: pick(Level.allCases), publicAccess: pick([Level.none, .canViewApp]), grants: grants,
            assets: subset(assets.map(\.id)))
    }
    return Workspace(
        settings: WorkspaceSettings(
            plan: plan, allowedDomains: subset(["acme.com", "example.com", "b.io"]), defaultDomainRole: pick(roles),
            viewerSeatsPaid: random.next() % 2 == 0,
            directorySync: DirectorySync(enabled: syncEnabled, roleSync: roleSync, roleMappings: mappings)),
        users: users, groups: groups, assets: assets, projects: projects)
}

import AuthzDocument
import AuthzEngine
import AuthzQuery
import AuthzStore
import ConformanceSupport
import Foundation
import Testing

/// Every file of ../shared/conformance, through the whole local path: the document is
/// decoded and validated, imported into a fresh SQLite file, loaded back read-only as a
/// snapshot, and every check is answered and compared. New files are picked up at run time.
@Suite("Conformance (import → SQLite → snapshot)")
struct ConformanceTests {
    @Test func theConformanceFolderExistsAndHasFiles() throws {
        let directory = try Conformance.directory()
        let names = Conformance.fileNames()
        #expect(!names.isEmpty, "no *.json in \(directory.path)")
    }

    @Test(arguments: Conformance.fileNames())
    func scenario(_ fileName: String) async throws {
        let scenario = try Conformance.load(fileName)
        let scratch = try TemporaryDirectory()

        if let document = scenario.document {
            let workspace = try WorkspaceDocument.decode(document)
            let path = scratch.path("workspace.db")
            let store = try WorkspaceStore.open(path: path, create: true)
            let version = try store.importWorkspace(workspace)
            let snapshot = try SnapshotLoader.load(path: path)
            #expect(snapshot.version == version)
            #expect(snapshot.warnings.isEmpty, "\(snapshot.warnings)")
            for (index, check) in scenario.checks.enumerated() {
                let question = try Conformance.query(of: check)
                let answer = await Conformance.answer(question, snapshot: snapshot)
                #expect(answer["snapshot_version"] == .number(Double(version)))
                let problems = Conformance.mismatches(expect: check["expect"] ?? .null, answer: answer)
                #expect(problems.isEmpty, "\(fileName) checks[\(index)] \(check): \(problems.joined(separator: "; "))")
            }
        }

        for invalid in scenario.invalidDocuments {
            // A database that already holds a workspace must be left exactly as it was.
            let path = scratch.path("invalid-\(abs(invalid.name.hashValue)).db")
            let store = try WorkspaceStore.open(path: path, create: true)
            let before = try store.importWorkspace(Workspace(settings: WorkspaceSettings(plan: .team)))
            do {
                let workspace = try WorkspaceDocument.decode(invalid.document)
                _ = try store.importWorkspace(workspace)
                Issue.record("\(fileName) '\(invalid.name)': accepted an invalid document")
            } catch let error as DocumentError {
                let paths = Set(error.issues.map(\.path))
                for expected in invalid.errors {
                    #expect(paths.contains(expected), "\(fileName) '\(invalid.name)': missing error at \(expected); got \(error.issues)")
                }
            }
            #expect(try store.snapshotVersion() == before)
        }
    }
}

/// The conformance files may hold lookups (RULES.md §8): a check with op `list_projects`,
/// `list_project_access` or `list_assets` expects the complete listing's `items` (or its
/// `reason`). None of the shared files has one yet, so this scenario shows the runner reads
/// them the way it reads the others.
@Suite("Conformance lookups")
struct ConformanceLookupTests {
    @Test func lookupChecksAreAnsweredWithTheCompleteListing() async throws {
        let document = try JSONValue.parse(Array(#"""
            {"workspace": {"plan": "team"},
             "users": [{"id": "ann", "email": "ann@x.io", "origin": "manual", "role": "editor"},
                       {"id": "bob", "email": "bob@x.io", "origin": "manual", "role": "viewer"}],
             "assets": [{"id": "dc", "kind": "data_connection", "name": "DC"}],
             "projects": [{"id": "p2", "owner": "ann", "workspace_access": "can_view"},
                          {"id": "p1", "grants": [{"user": "bob", "level": "can_edit"}]}]}
            """#.utf8))
        let scratch = try TemporaryDirectory()
        let path = scratch.path("lookups.db")
        _ = try WorkspaceStore.open(path: path, create: true).importWorkspace(try WorkspaceDocument.decode(document))
        let snapshot = try SnapshotLoader.load(path: path)
        let checks = [
            #"{"op":"list_projects","user":"bob","expect":{"items":[{"id":"p1","level":"can_view","reason":"role_cap"},{"id":"p2","level":"can_view","reason":"workspace_share"}]}}"#,
            #"{"op":"list_project_access","project":"p2","min_level":"full_access","expect":{"items":[{"id":"ann","level":"full_access","reason":"owner"}]}}"#,
            #"{"op":"list_assets","user":"bob","expect":{"items":[{"id":"dc","access":"view","reason":"role_cannot_use"}]}}"#,
            #"{"op":"list_projects","user":"zed","expect":{"items":[],"reason":"unknown_user"}}"#,
        ]
        for check in checks {
            let json = try JSONValue.parse(Array(check.utf8))
            let answer = await Conformance.answer(try Conformance.query(of: json), snapshot: snapshot)
            let problems = Conformance.mismatches(expect: json["expect"] ?? .null, answer: answer)
            #expect(problems.isEmpty, "\(check): \(problems)")
            #expect(answer["snapshot_version"] == .number(Double(snapshot.version)))
        }
        // A wrong expectation is caught.
        let wrong = try JSONValue.parse(Array(#"{"op":"list_projects","user":"ann","expect":{"items":[]}}"#.utf8))
        let answer = await Conformance.answer(try Conformance.query(of: wrong), snapshot: snapshot)
        #expect(!Conformance.mismatches(expect: wrong["expect"] ?? .null, answer: answer).isEmpty)
    }
}

/// A temporary directory removed when the value is released.
final class TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("authz-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    deinit { try? FileManager.default.removeItem(at: url) }
}

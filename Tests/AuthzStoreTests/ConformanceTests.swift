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
    func scenario(_ fileName: String) throws {
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
                let query = try Conformance.query(of: check)
                let answer = Answer(query, snapshot: snapshot).json
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

// Every file of ../shared/conformance over the socket: the workspace is imported into a
// fresh database, a real server serves it, every check is asked through SidecarClient,
// converted back to an `Answer` and compared with the expectation, and with the answer
// computed locally from the same database (identical JSON).

import AuthzClient
import AuthzDocument
import AuthzEngine
import AuthzQuery
import AuthzServer
import AuthzStore
import AuthzWire
import ConformanceSupport
import Testing

@Suite("Conformance over the socket")
struct ConformanceOverSocketTests {
    @Test func theConformanceFolderHasFiles() throws {
        _ = try Conformance.directory()
        #expect(!Conformance.fileNames().isEmpty)
    }

    @Test(arguments: Conformance.fileNames())
    func scenario(_ fileName: String) async throws {
        let scenario = try Conformance.load(fileName)
        guard let document = scenario.document else { return }  // invalid documents only
        let workspace = try WorkspaceDocument.decode(document)
        try await withServer(workspace: workspace) { server in
            let local = try SnapshotLoader.load(path: server.configuration.databasePath)
            let client = try await server.client()
            let queries = try scenario.checks.map { try Conformance.query(of: $0) }
            // All checks at once: pipelined on one connection.
            let answers = try await withThrowingTaskGroup(of: (Int, Answer).self) { group in
                for (index, query) in queries.enumerated() {
                    group.addTask { (index, try await client.answer(query)) }
                }
                var answers = [Answer?](repeating: nil, count: queries.count)
                for try await (index, answer) in group { answers[index] = answer }
                return answers
            }
            for (index, check) in scenario.checks.enumerated() {
                guard let answer = answers[index] else {
                    Issue.record("\(fileName) checks[\(index)]: no answer")
                    continue
                }
                let json = answer.json
                #expect(answer.snapshotVersion == local.version)
                let problems = Conformance.mismatches(expect: check["expect"] ?? .null, answer: json)
                #expect(problems.isEmpty, "\(fileName) checks[\(index)] \(check): \(problems.joined(separator: "; "))")
                let expected = Answer(queries[index], snapshot: local).json
                #expect(json == expected, "\(fileName) checks[\(index)]: socket \(json) vs local \(expected)")
            }
            // The same checks as one batch, from one snapshot.
            let batch = try await client.batch(queries.map { WireRequest.Check(query: $0) }, explain: true)
            #expect(batch.snapshotVersion == local.version)
            for (index, result) in batch.result.enumerated() {
                let answer = Answer(wire: result, snapshotVersion: batch.snapshotVersion)
                #expect(answer == answers[index], "\(fileName) batch result \(index)")
            }
            await client.close()
        }
    }
}

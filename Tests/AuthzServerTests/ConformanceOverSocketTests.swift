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
            let questions = try scenario.checks.map { try Conformance.query(of: $0) }
            // Lookups (RULES.md §8): the complete listing over the socket, page by page.
            for (index, question) in questions.enumerated() {
                guard case .lookup(let lookup) = question else { continue }
                let check = scenario.checks[index]
                let json = await lookup.completeListing { await client.page(lookup, token: $0) }
                let problems = Conformance.mismatches(expect: check["expect"] ?? .null, answer: json)
                #expect(problems.isEmpty, "\(fileName) checks[\(index)] \(check): \(problems.joined(separator: "; "))")
                let expected = await Conformance.answer(question, snapshot: local)
                #expect(json == expected, "\(fileName) checks[\(index)]: socket \(json) vs local \(expected)")
            }
            let checks: [(index: Int, query: Query)] = questions.enumerated().compactMap { index, question in
                guard case .check(let query) = question else { return nil }
                return (index, query)
            }
            let queries = checks.map(\.query)
            // All checks at once: pipelined on one connection.
            let answers = try await withThrowingTaskGroup(of: (Int, Answer).self) { group in
                for (index, query) in queries.enumerated() {
                    group.addTask { (index, try await client.answer(query)) }
                }
                var answers = [Answer?](repeating: nil, count: queries.count)
                for try await (index, answer) in group { answers[index] = answer }
                return answers
            }
            for (index, (checkIndex, _)) in checks.enumerated() {
                let check = scenario.checks[checkIndex]
                guard let answer = answers[index] else {
                    Issue.record("\(fileName) checks[\(checkIndex)]: no answer")
                    continue
                }
                let json = answer.json
                #expect(answer.snapshotVersion == local.version)
                let problems = Conformance.mismatches(expect: check["expect"] ?? .null, answer: json)
                #expect(problems.isEmpty, "\(fileName) checks[\(checkIndex)] \(check): \(problems.joined(separator: "; "))")
                let expected = Answer(queries[index], snapshot: local).json
                #expect(json == expected, "\(fileName) checks[\(checkIndex)]: socket \(json) vs local \(expected)")
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

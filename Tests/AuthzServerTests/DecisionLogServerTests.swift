// The decision log on a real server (either transport: the suite runs again with
// AUTHZ_TEST_TRANSPORT=nio): every kind of decision read back from the file, the filters, a
// full buffer that drops and counts while every request is answered, a full disk.

import AuthzEngine
import AuthzServer
import AuthzWire
import Foundation
import Testing
import WireTestSupport

@Suite("Decision log: on a server")
struct DecisionLogServerTests {
    static func lines(_ path: String) throws -> [[String: Any]] {
        let text = String(decoding: try readFileBytes(path), as: UTF8.self)
        return try text.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
        }
    }

    /// Sends `requests` in one write and reads as many responses.
    static func exchange(_ server: RunningServer, _ requests: [WireRequest]) async throws -> [WireResponse] {
        let connection = try RawConnection(path: server.socketPath)
        defer { connection.closeSocket() }
        var bytes: [UInt8] = []
        for request in requests { request.append(to: &bytes) }
        try connection.send(bytes)
        var responses: [WireResponse] = []
        for _ in requests { responses.append(try #require(try await connection.readResponse())) }
        return responses
    }

    @Test func everyKindOfDecisionIsWrittenAsOneLine() async throws {
        var path = ""
        try await withServer(reloading: .init(), configure: { configuration in
            path = configuration.databasePath + ".decisions.jsonl"
            configuration.decisionLog = DecisionLogConfiguration(destination: .file(path))
            noAutomaticReload(&configuration)
        }) { server in
            let version = try #require(server.snapshots.snapshot?.version)
            let responses = try await Self.exchange(server, [
                // Plain checks (the epoll fast path), one with a yes/no question.
                WireRequest(callId: 1, method: .check(.effectivePermission(.init(user: "u-editor", project: "p-revenue", requiredLevel: .fullAccess)))),
                WireRequest(callId: 2, method: .check(.canUse(.init(user: "u-viewer", asset: "a-warehouse", project: "p-revenue")))),
                WireRequest(callId: 3, method: .check(.seatType(user: "u-editor"))),
                // The general path: explain, capabilities, a batch, a lookup, an error (after
                // decoding: no snapshot new enough is not it here; see the waiting test).
                WireRequest(callId: 4, explain: true, method: .check(.effectivePermission(.init(user: "", project: "p-revenue")))),
                WireRequest(callId: 5, method: .check(.capabilities(user: "u-viewer"))),
                WireRequest(callId: 6, method: .batch([.seatType(user: "u-nobody"), .canUse(.init(user: "u-admin", asset: "a-open"))])),
                WireRequest(callId: 7, method: .lookup(.projects(.init(user: "u-editor")))),
                // Not decisions: a request that cannot be decoded (a bad id) names no valid
                // inputs (the metrics count it), Status.
                WireRequest(callId: 8, method: .check(.effectivePermission(.init(user: "u editor", project: "p-revenue")))),
                WireRequest(callId: 9, method: .status),
            ])
            #expect(responses.map(\.callId) == Array(1...9))
            do {
                try await eventually(.seconds(5), "the decisions are written") {
                    server.server.decisionLogStatistics?.written == 8
                }
            } catch {
                Issue.record("\(String(describing: server.server.decisionLogStatistics)): \(String(decoding: (try? readFileBytes(path)) ?? [], as: UTF8.self))")
                throw error
            }
            let lines = try Self.lines(path)
            #expect(lines.count == 8)
            func line(_ callId: Int, _ index: Int? = nil) throws -> [String: Any] {
                try #require(lines.first { $0["call_id"] as? Int == callId && $0["batch_index"] as? Int == index }, "call \(callId)")
            }
            let first = try line(1)
            #expect(first["method"] as? String == "effective_permission")
            #expect(first["user"] as? String == "u-editor" && first["project"] as? String == "p-revenue")
            #expect(first["level"] as? String == "can_edit" && first["allowed"] as? Bool == false)
            #expect(first["reason"] as? String != nil && first["snapshot_version"] as? Int == Int(version))
            #expect(first["peer_pid"] as? Int == Int(getpid()) && first["peer_uid"] as? Int == Int(getuid()))
            #expect((first["latency_us"] as? Double ?? -1) >= 0 && (first["time"] as? String)?.hasSuffix("Z") == true)
            let second = try line(2)
            #expect(second["asset"] as? String == "a-warehouse" && second["access"] as? String == "view")
            #expect(second["allowed"] == nil, "no yes/no question was asked")
            #expect(try line(3)["seat"] as? String == "paid_author")
            #expect(try line(4)["user"] as? String == "" && line(4)["level"] as? String == "can_view_app")
            #expect(try line(5)["capabilities"] as? Int ?? 0 > 0)
            #expect(try line(6, 0)["seat"] as? String == "none" && line(6, 1)["access"] as? String == "use")
            #expect(try line(7)["method"] as? String == "list_projects" && line(7)["items"] as? Int == 2)
            #expect(!lines.contains { $0["call_id"] as? Int == 8 || $0["call_id"] as? Int == 9 })
        }
    }

    @Test func aRequestThatWaitedForItsVersionIsLoggedWhenAnswered() async throws {
        var path = ""
        try await withServer(reloading: .init(), configure: { configuration in
            path = configuration.databasePath + ".decisions.jsonl"
            configuration.decisionLog = DecisionLogConfiguration(destination: .file(path))
            noAutomaticReload(&configuration)
        }) { server in
            let version = try #require(server.snapshots.snapshot?.version)
            let responses = try await Self.exchange(server, [
                WireRequest(callId: 1, minSnapshotVersion: version + 1, deadlineMs: 100, method: .check(.seatType(user: "u-admin")))
            ])
            #expect(responses[0].status.code == .failedPrecondition)
            try await eventually(.seconds(5), "written") { server.server.decisionLogStatistics?.written == 1 }
            let line = try #require(try Self.lines(path).first)
            #expect(line["error"] as? String == "FAILED_PRECONDITION")
            #expect((line["latency_us"] as? Double ?? 0) >= 100_000, "it waited 100 ms")
        }
    }

    @Test func theFiltersKeepDenialsOfChosenMethods() async throws {
        var path = ""
        try await withServer(configure: { configuration in
            path = configuration.databasePath + ".decisions.jsonl"
            configuration.decisionLog = DecisionLogConfiguration(
                destination: .file(path), denialsOnly: true, methods: [.canUse])
        }) { server in
            _ = try await Self.exchange(server, [
                WireRequest(callId: 1, method: .check(.canUse(.init(user: "u-viewer", asset: "a-warehouse", requiredAccess: .use)))),
                WireRequest(callId: 2, method: .check(.canUse(.init(user: "u-admin", asset: "a-warehouse", requiredAccess: .use)))),
                WireRequest(callId: 3, method: .check(.seatType(user: "u-nobody"))),
                WireRequest(callId: 4, method: .check(.canUse(.init(user: "u-nobody", asset: "a-warehouse")))),
            ])
            try await eventually(.seconds(5), "written") { server.server.decisionLogStatistics?.written == 2 }
            try await Task.sleep(for: .milliseconds(100))
            #expect(try Self.lines(path).compactMap { $0["call_id"] as? Int }.sorted() == [1, 4])
        }
    }

    @Test func aFullBufferDropsAndCountsAndEveryRequestIsAnswered() async throws {
        let directory = try TestDirectory()
        let path = directory.file("decisions.jsonl")
        try await withServer(configure: { configuration in
            // The writer drains only at stop: the 16-slot buffer overflows.
            configuration.decisionLog = DecisionLogConfiguration(destination: .file(path), bufferSize: 16, flushInterval: .seconds(3600))
        }) { server in
            let requests = (1...500).map { WireRequest(callId: UInt64($0), method: .check(.seatType(user: "u-editor"))) }
            let responses = try await Self.exchange(server, requests)
            #expect(responses.count == 500 && responses.allSatisfy { $0.status.code == .ok })
            let statistics = try #require(server.server.decisionLogStatistics)
            #expect(statistics.dropped == 484, "\(statistics)")
        }
        #expect(try Self.lines(path).count == 16, "the buffered ones are written at shutdown")
    }

    @Test func aFullDiskLosesDecisionsButNoAnswers() async throws {
        try await withServer(configure: { configuration in
            configuration.decisionLog = DecisionLogConfiguration(destination: .file("/dev/full"), flushInterval: .milliseconds(5))
        }) { server in
            for round in 0..<3 {
                let requests = (1...50).map { WireRequest(callId: UInt64(round * 50 + $0), method: .check(.seatType(user: "u-editor"))) }
                let responses = try await Self.exchange(server, requests)
                #expect(responses.allSatisfy { $0.status.code == .ok })
            }
            try await eventually(.seconds(5), "the failed writes are counted") {
                server.server.decisionLogStatistics?.lost == 150
            }
            let statistics = try #require(server.server.decisionLogStatistics)
            #expect(statistics.written == 0 && statistics.writeErrors >= 1)
            #expect(server.logs.all.filter { $0.message.contains("decision log: cannot write") }.count == 1, "logged once")
        }
    }

    @Test func theMetricsCountWhatTheLogWroteAndDropped() async throws {
        let directory = try TestDirectory()
        let address = MetricsAddress.unix(directory.file("metrics.sock"))
        try await withServer(configure: { configuration in
            configuration.metricsListen = address
            configuration.decisionLog = DecisionLogConfiguration(
                destination: .file(directory.file("decisions.jsonl")), bufferSize: 16, flushInterval: .seconds(3600))
        }) { server in
            _ = try await Self.exchange(server, (1...40).map { WireRequest(callId: UInt64($0), method: .check(.seatType(user: "u-editor"))) })
            let metrics = try scrape(address)
            #expect(metrics.value("authzd_decision_log_events_total", ["result": "dropped"]) == 24)
            #expect(metrics.value("authzd_decision_log_events_total", ["result": "written"]) == 0)
            #expect(metrics.value("authzd_decision_log_write_errors_total") == 0)
        }
    }

    @Test func aDecisionLogThatCannotBeOpenedStopsTheServerAtStart() async throws {
        await #expect(throws: ConfigurationError.self) {
            try await withServer(configure: { configuration in
                configuration.decisionLog = DecisionLogConfiguration(destination: .file("/nonexistent-dir/decisions.jsonl"))
            }) { _ in }
        }
    }
}

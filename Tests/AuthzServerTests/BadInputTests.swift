// Bad input: each case is handled on its own connection while the server keeps serving
// every other connection (checked with a healthy connection opened before and used after).

import AuthzClient
import AuthzEngine
import AuthzServer
import AuthzWire
import Testing
import WireTestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Asserts a healthy connection is still answered.
func expectServing(_ client: SidecarClient, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let reply = try await client.seatType(user: "u-admin")
    #expect(reply.result.seat == .paidAuthor, sourceLocation: sourceLocation)
}

@Suite("Bad input")
struct BadInputTests {
    @Test func aFrameOverTheLimitIsRejectedWhenItsHeaderArrives() async throws {
        try await withServer(configure: { $0.maxFrameSize = 1024 }) { server in
            let healthy = try await server.client()
            let connection = try RawConnection(path: server.socketPath)
            // Only the header: the answer must come without any payload being sent.
            try connection.send([0, 0, 0, 0x04, 0x01])  // declares 1025 bytes
            let response = try #require(await connection.readResponse())
            #expect(response.callId == 0)
            #expect(response.status.code == .resourceExhausted)
            #expect(response.status.message.contains("1025"))
            #expect(try await connection.readsEndOfStream(), "the connection is closed after the error")
            try await expectServing(healthy)
            // A frame of exactly the limit is fine (it is just not a valid request).
            let atLimit = try RawConnection(path: server.socketPath)
            try atLimit.send(frame([UInt8](repeating: 0xFF, count: 1024)))
            #expect(try await atLimit.readResponse()?.status.code == .invalidArgument)
            await healthy.close()
        }
    }

    @Test func aNonZeroFlagByteIsAnErrorAndClosesTheConnection() async throws {
        try await withServer { server in
            let healthy = try await server.client()
            let connection = try RawConnection(path: server.socketPath)
            try connection.send([1])  // a compressed frame, refused at its first byte
            let response = try #require(await connection.readResponse())
            #expect(response.callId == 0)
            #expect(response.status.code == .invalidArgument)
            #expect(response.status.message.contains("flag"))
            #expect(try await connection.readsEndOfStream())
            try await expectServing(healthy)
            await healthy.close()
        }
    }

    @Test func aPayloadThatIsNotProtobufIsInvalidAndTheConnectionStaysUsable() async throws {
        try await withServer { server in
            let connection = try RawConnection(path: server.socketPath)
            try connection.send(frame([0xFF, 0xFF, 0xFF, 0xFF]))
            let response = try #require(await connection.readResponse())
            #expect(response.status.code == .invalidArgument)
            #expect(response.callId == 0)
            // A damaged payload whose call_id came first still gets its call id back.
            try connection.send(frame(PB.varint(1, 77) + [0x0A, 0x7F]))
            let salvaged = try #require(await connection.readResponse())
            #expect(salvaged.callId == 77)
            #expect(salvaged.status.code == .invalidArgument)
            // Framing is intact: the same connection answers the next request.
            try connection.send(WireRequest(callId: 9, method: .check(.seatType(user: "u-admin"))))
            let next = try #require(await connection.readResponse())
            #expect(next.callId == 9)
            #expect(next.status.code == .ok)
        }
    }

    @Test func aRequestWithoutAMethodIsInvalid() async throws {
        try await withServer { server in
            let connection = try RawConnection(path: server.socketPath)
            try connection.send(frame(PB.varint(1, 7)))
            let response = try #require(await connection.readResponse())
            #expect(response.callId == 7)
            #expect(response.status.code == .invalidArgument)
            #expect(response.status.message.contains("no method"))
            // A zero-length payload is a valid frame: an empty Request, with no method.
            try connection.send(frame([]))
            let empty = try #require(await connection.readResponse())
            #expect(empty.callId == 0)
            #expect(empty.status.code == .invalidArgument)
            // An unknown method of a newer protocol (field 20) is UNIMPLEMENTED.
            try connection.send(frame(PB.varint(1, 11) + PB.bytes(20, [])))
            let newer = try #require(await connection.readResponse())
            #expect(newer.callId == 11)
            #expect(newer.status.code == .unimplemented)
            try connection.send(WireRequest(callId: 8, method: .status))
            #expect(try await connection.readResponse()?.status.code == .ok)
        }
    }

    @Test func unknownEnumValuesAreInvalid() async throws {
        try await withServer { server in
            let connection = try RawConnection(path: server.socketPath)
            // effective_permission (field 11) with required_level = 99.
            let query = PB.string(1, "u-admin") + PB.string(2, "p-revenue") + PB.varint(3, 99)
            try connection.send(frame(PB.varint(1, 3) + PB.bytes(11, query)))
            let response = try #require(await connection.readResponse())
            #expect(response.callId == 3)
            #expect(response.status.code == .invalidArgument)
            #expect(response.status.message.contains("required_level"))
            // can_use (field 10) with required_access = 99.
            let access = PB.string(1, "u-admin") + PB.string(2, "a-open") + PB.varint(4, 99)
            try connection.send(frame(PB.varint(1, 4) + PB.bytes(10, access)))
            let second = try #require(await connection.readResponse())
            #expect(second.callId == 4)
            #expect(second.status.code == .invalidArgument)
            #expect(second.status.message.contains("required_access"))
        }
    }

    @Test func emptyAndOverlongIdsAreInvalidButAnEmptyUserIsTheAnonymousViewer() async throws {
        try await withServer { server in
            let client = try await server.client()
            func code(_ check: WireRequest.Check) async throws -> RPCCode {
                try await client.call(WireRequest(callId: 0, method: .check(check))).status.code
            }
            #expect(try await code(.effectivePermission(.init(user: "u-admin", project: ""))) == .invalidArgument)
            #expect(try await code(.canUse(.init(user: "u-admin", asset: ""))) == .invalidArgument)
            let long = String(repeating: "x", count: 129)
            #expect(try await code(.effectivePermission(.init(user: long, project: "p-revenue"))) == .invalidArgument)
            #expect(try await code(.effectivePermission(.init(user: "u-admin", project: long))) == .invalidArgument)
            #expect(try await code(.seatType(user: "bad id")) == .invalidArgument)
            #expect(try await code(.capabilities(user: "caf\u{E9}")) == .invalidArgument)
            // 128 bytes is the longest id: valid, just unknown.
            let longest = String(repeating: "x", count: 128)
            let unknown = try await client.effectivePermission(user: longest, project: "p-revenue")
            #expect(unknown.result.reason == .unknownUser)
            // The empty user is the anonymous web viewer.
            let anonymous = try await client.effectivePermission(user: "", project: "p-revenue")
            #expect(anonymous.result.level == .canViewApp)
            let anonymousUse = try await client.canUse(user: "", asset: "a-open")
            #expect(anonymousUse.result.access == .view)
            #expect(anonymousUse.result.reason == .anonymousPublic)
            // A bad check inside a batch fails the batch, naming the check.
            let batch = try await client.call(
                WireRequest(
                    callId: 0,
                    method: .batch([.seatType(user: "u-admin"), .effectivePermission(.init(user: "u-admin", project: ""))])))
            #expect(batch.status.code == .invalidArgument)
            #expect(batch.status.message.contains("batch.checks[1]"))
            await client.close()
        }
    }

    /// Issue 9, defect 3: an id with a NUL byte inside was answered as its prefix
    /// (`u-admin\0junk` as the owner `u-admin`). Raw payloads, one write, so the epoll
    /// transport's fast path sees them in one run with valid checks around them.
    @Test func anIdWithAnEmbeddedNulIsInvalidNamingTheFieldOnEveryPath() async throws {
        try await withServer { server in
            let connection = try RawConnection(path: server.socketPath)
            let good = PB.varint(1, 1) + PB.bytes(11, PB.string(1, "u-admin") + PB.string(2, "p-revenue"))
            let cases: [(callId: UInt64, body: [UInt8], field: String)] = [
                // Plain single checks (the fast path's kind of request).
                (2, PB.bytes(11, PB.string(1, "u-admin\0junk") + PB.string(2, "p-revenue")), "effective_permission.user"),
                (3, PB.bytes(11, PB.string(1, "u-admin") + PB.string(2, "p-revenue\0")), "effective_permission.project"),
                (4, PB.bytes(10, PB.string(1, "u-admin") + PB.string(2, "a-open\0x")), "can_use.asset"),
                (5, PB.bytes(10, PB.string(1, "u-admin") + PB.string(2, "a-open") + PB.string(3, "p-revenue\0x")), "can_use.project"),
                (6, PB.bytes(12, PB.string(1, "\0u-admin")), "seat_type.user"),
                // The general path's: explained, a deadline, capabilities, a batch.
                (7, PB.varint(4, 1) + PB.bytes(11, PB.string(1, "u-admin\0x") + PB.string(2, "p-revenue")), "effective_permission.user"),
                (8, PB.varint(3, 500) + PB.bytes(12, PB.string(1, "u-admin\0")), "seat_type.user"),
                (9, PB.bytes(13, PB.string(1, "u-admin\0x")), "capabilities.user"),
                (10, PB.bytes(14, PB.bytes(1, PB.bytes(3, PB.string(1, "u-admin"))) + PB.bytes(1, PB.bytes(2, PB.string(1, "u-admin\0x") + PB.string(2, "p-revenue")))), "batch.checks[1].effective_permission.user"),
            ]
            var bytes = frame(good)
            for item in cases { bytes += frame(PB.varint(1, item.callId) + item.body) + frame(good) }
            try connection.send(bytes)
            let first = try #require(await connection.readResponse())
            #expect(first.callId == 1 && first.status.code == .ok)
            for item in cases {
                let response = try #require(await connection.readResponse())
                #expect(response.callId == item.callId)
                #expect(response.status.code == .invalidArgument, "\(item.field): \(response)")
                #expect(response.status.message.hasPrefix(item.field + ": "), "\(response.status.message)")
                #expect(response.status.message.contains("NUL"), "\(response.status.message)")
                let after = try #require(await connection.readResponse())
                #expect(after.callId == 1 && after.status.code == .ok, "the connection goes on")
            }
        }
    }

    @Test func aBatchOverTheLimitIsRejectedAndTheConnectionStaysUsable() async throws {
        try await withServer(configure: { $0.maxBatchSize = 4 }) { server in
            let client = try await server.client()
            let check = WireRequest.Check.seatType(user: "u-admin")
            let tooMany = try await client.call(WireRequest(callId: 0, method: .batch(Array(repeating: check, count: 5))))
            #expect(tooMany.status.code == .resourceExhausted)
            #expect(tooMany.callId != 0, "the call id is known and echoed")
            let atLimit = try await client.batch(Array(repeating: check, count: 4))
            #expect(atLimit.result.count == 4)
            let empty = try await client.batch([])
            #expect(empty.result.isEmpty)
            await client.close()
        }
    }

    @Test func halfAFrameThenSilenceIsClosedByTheIdleTimeout() async throws {
        try await withServer(configure: { $0.idleTimeout = .milliseconds(1500) }) { server in
            /// A fresh connection each time: any connection left idle is closed too.
            func expectOthersServed() async throws {
                let client = try await server.client()
                try await expectServing(client)
                await client.close()
            }
            let stalled = try RawConnection(path: server.socketPath)
            let started = ContinuousClock.now
            try stalled.send([0, 0, 0, 0, 20, 0x08])  // header of 20 bytes, then one byte
            try await expectOthersServed()
            #expect(try await stalled.readsEndOfStream(timeout: .seconds(8)))
            let waited = ContinuousClock.now - started
            #expect(waited >= .milliseconds(1400) && waited < .seconds(7), "closed after \(waited)")
            try await expectOthersServed()
            let lines = server.logs.all.filter { $0.message.contains("middle of a frame") }
            #expect(lines.count == 1)
        }
    }

    @Test func aClientThatDisconnectsBeforeReadingLeavesAtMostOneLogLine() async throws {
        try await withServer { server in
            for _ in 0..<20 {
                let connection = try RawConnection(path: server.socketPath)
                var bytes: [UInt8] = []
                for id in 1...200 {
                    WireRequest(callId: UInt64(id), explain: true, method: .check(.effectivePermission(.init(user: "u-editor", project: "p-revenue"))))
                        .append(to: &bytes)
                }
                try connection.send(bytes)
                // Gone without reading a byte (RST-like: unread data is discarded).
            }
            let healthy = try await server.client()
            try await expectServing(healthy)
            try await eventually(.seconds(5), "connections closed") { server.server.status.connectionsOpen == 1 }
            for (connection, lines) in server.logs.linesByConnection {
                #expect(lines.count <= 1, "connection \(connection) logged \(lines.map(\.message))")
            }
            #expect(!server.logs.all.contains { $0.level >= .warning })
            await healthy.close()
        }
    }

    @Test func aClientThatNeverReadsIsNotBufferedWithoutBound() async throws {
        try await withServer(configure: {
            $0.writeBufferHighWaterMark = 16 * 1024
            $0.writeBufferLowWaterMark = 8 * 1024
        }) { server in
            let healthy = try await server.client()
            let greedy = try RawConnection(path: server.socketPath)
            greedy.setNonBlocking()
            var chunk: [UInt8] = []
            for id in 1...1000 {
                WireRequest(callId: UInt64(id), explain: true, method: .check(.effectivePermission(.init(user: "u-editor", project: "p-revenue"))))
                    .append(to: &chunk)
            }
            // Write until the socket stops accepting bytes: the server must stop reading.
            var sent = 0
            var blockedFor: Duration = .zero
            let limit = 64 << 20
            let deadline = ContinuousClock.now + .seconds(20)
            while sent < limit, ContinuousClock.now < deadline {
                let written = try greedy.tryWrite(chunk)
                if written == 0 {
                    // Blocked; give the server time to read more if it would.
                    try await Task.sleep(for: .milliseconds(20))
                    blockedFor += .milliseconds(20)
                    if blockedFor >= .milliseconds(500) { break }
                    // Others are still served meanwhile.
                    try await expectServing(healthy)
                    continue
                }
                blockedFor = .zero
                sent += written
                if written < chunk.count {
                    // Keep frames aligned: finish this chunk before the next.
                    var rest = Array(chunk[written...])
                    while !rest.isEmpty, ContinuousClock.now < deadline {
                        let more = try greedy.tryWrite(rest)
                        if more == 0 { break }
                        sent += more
                        rest.removeFirst(more)
                    }
                    if !rest.isEmpty { break }
                }
            }
            #expect(sent < 8 << 20, "the server kept reading \(sent) bytes from a client that never reads")
            #expect(blockedFor >= .milliseconds(500) || sent < limit, "writes stopped being accepted")
            try await expectServing(healthy)
            let status = try await healthy.status()
            // Bounded: far fewer requests answered than could have been sent.
            #expect(status.requestsServed < UInt64(limit / 40))
            await healthy.close()
        }
    }

    @Test func aThousandConnectionsAtOnceAreAllAnswered() async throws {
        raiseOpenFileLimit(to: 8192)
        try await withServer(logLevel: .warning) { server in
            let clients = try await withTimeout(.seconds(60), "1000 connections") {
                try await withThrowingTaskGroup(of: SidecarClient.self) { group in
                    for index in 0..<1000 {
                        group.addTask {
                            let client = try await server.client(callTimeout: .seconds(30))
                            let reply = try await client.seatType(user: index % 2 == 0 ? "u-admin" : "u-guest")
                            #expect(reply.result.seat == (index % 2 == 0 ? .paidAuthor : .guest))
                            return client
                        }
                    }
                    var clients: [SidecarClient] = []
                    for try await client in group { clients.append(client) }
                    return clients
                }
            }
            #expect(clients.count == 1000)
            let status = try await clients[0].status()
            #expect(status.connectionsOpen == 1000)
            await withTaskGroup(of: Void.self) { group in
                for client in clients { group.addTask { await client.close() } }
            }
            try await eventually(.seconds(10), "all closed") { server.server.status.connectionsOpen == 0 }
        }
    }

    @Test func aConnectionBeyondTheMaximumIsRejectedAndTheOthersKeepWorking() async throws {
        try await withServer(configure: { $0.maxConnections = 3 }) { server in
            var clients: [SidecarClient] = []
            for _ in 0..<3 {
                let client = try await server.client()
                try await expectServing(client)
                clients.append(client)
            }
            let extra = try RawConnection(path: server.socketPath)
            let response = try #require(await extra.readResponse())
            #expect(response.callId == 0)
            #expect(response.status.code == .resourceExhausted)
            #expect(response.status.message.contains("at most 3"))
            #expect(try await extra.readsEndOfStream())
            // The typed client reports it as its error.
            do {
                let rejected = try await server.client()
                _ = try await rejected.status()
                Issue.record("a fourth connection was served")
            } catch let error as AuthzClientError {
                #expect(error.code == .resourceExhausted || error.code == .unavailable)
            }
            for client in clients { try await expectServing(client) }
            // Once one closes, a new connection is accepted.
            await clients[0].close()
            try await eventually(.seconds(5), "a slot frees up") { server.server.status.connectionsOpen <= 2 }
            let replacement = try await server.client()
            try await expectServing(replacement)
            await replacement.close()
            for client in clients.dropFirst() { await client.close() }
        }
    }
}

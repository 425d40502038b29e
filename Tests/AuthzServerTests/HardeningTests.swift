// Issue 9's connection defects, each over a real socket (the suite runs on both transports:
// scripts/test.sh runs it again with AUTHZ_TEST_TRANSPORT=nio).

import AuthzClient
import AuthzEngine
@testable import AuthzServer
import AuthzWire
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

private let explorerCheck = WireRequest.Check.effectivePermission(.init(user: "u-explorer", project: "p-secret"))

@Suite("Hardening: connection defects")
struct HardeningTests {
    /// Defect 1: a client that hangs up while its request waits for a newer snapshot. Before,
    /// epoll kept reporting the hang-up to a loop that read nothing (100% CPU until the
    /// deadline) and the waiter stayed registered; NIO left the waiter until its deadline.
    @Test func aHungUpClientsWaitingRequestIsWithdrawnAndItsConnectionClosed() async throws {
        try await withServer(reloading: .init(), configure: noAutomaticReload) { server in
            let version = try #require(server.snapshots.snapshot?.version)
            let connection = try RawConnection(path: server.socketPath)
            try connection.send(
                WireRequest(callId: 1, minSnapshotVersion: version + 1, deadlineMs: 30_000, method: .check(explorerCheck)))
            try await eventually(.seconds(5), "the request waits") { server.snapshots.waitingRequests == 1 }
            connection.closeSocket()
            try await eventually(.seconds(2), "the waiter is withdrawn") { server.snapshots.waitingRequests == 0 }
            try await eventually(.seconds(2), "the connection is closed") { server.server.status.connectionsOpen == 0 }
            let client = try await server.client()
            try await expectServing(client)
            await client.close()
        }
    }

    /// Defect 10: answers owed before a bad frame are all sent, then the framing error.
    /// NIO used to send only the framing error and close.
    @Test(arguments: [false, true])
    func answersOwedBeforeABadFrameAreSentFirst(reload: Bool) async throws {
        try await withServer(reloading: .init(), configure: noAutomaticReload) { server in
            let version = try #require(server.snapshots.snapshot?.version)
            let connection = try RawConnection(path: server.socketPath)
            var bytes: [UInt8] = []
            if reload {
                WireRequest(callId: 1, method: .reload).append(to: &bytes)
            } else {
                WireRequest(callId: 1, minSnapshotVersion: version + 1, deadlineMs: 200, method: .check(explorerCheck))
                    .append(to: &bytes)
            }
            WireRequest(callId: 2, method: .check(.seatType(user: "u-admin"))).append(to: &bytes)
            WireRequest(callId: 3, explain: true, method: .check(explorerCheck)).append(to: &bytes)
            bytes += [9, 0, 0, 0, 1, 0]  // a bad flag byte
            try connection.send(bytes)
            let first = try #require(try await connection.readResponse())
            #expect(first.callId == 1)
            #expect(first.status.code == (reload ? .ok : .failedPrecondition))
            for callId in [UInt64(2), 3] {
                let answer = try #require(try await connection.readResponse(), "answer \(callId) is owed")
                #expect(answer.callId == callId && answer.status.code == .ok)
            }
            let error = try #require(try await connection.readResponse())
            #expect(error.callId == 0 && error.status.code != .ok)
            #expect(try await connection.readsEndOfStream())
        }
    }

    /// Defect 7: activity in either direction counts. A client that pipelined a burst and
    /// reads its answers slowly is not cut off while it reads; epoll counted reads only.
    /// (Empty frames: each costs 5 bytes and is answered with an error of several times that.)
    @Test func aSlowReaderIsNotCutOffWhileItReads() async throws {
        try await withServer(configure: { $0.idleTimeout = .milliseconds(1500) }) { server in
            let connection = try RawConnection(path: server.socketPath)
            let requests = 40_000
            let bytes = [UInt8](repeating: 0, count: 5 * requests)
            connection.setNonBlocking()
            var written = 0
            let started = ContinuousClock.now
            var received = 0
            while received < requests {
                if written < bytes.count { written += try connection.tryWrite(Array(bytes[written...])) }
                // Read slowly: a little, then a pause shorter than the idle timeout.
                // Only answers to whole frames already written are owed (the client
                // writes on as the server reads; it never waits for its own next request).
                for _ in 0..<1000 where received < written / 5 {
                    let response = try #require(
                        try await connection.readResponse(), "closed after \(received) answers, \(written) bytes written: \(server.logs.all.map(\.message))")
                    #expect(response.status.code == .invalidArgument)
                    received += 1
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(ContinuousClock.now - started > .milliseconds(3000), "the reading outlasted the idle timeout")
        }
    }

    /// Defect 7: a request waiting for a snapshot is owed an answer: the idle timeout does
    /// not close its connection (NIO did); the answer comes at its deadline.
    @Test func aParkedRequestOutlivesTheIdleTimeout() async throws {
        try await withServer(reloading: .init(), configure: {
            noAutomaticReload(&$0)
            $0.idleTimeout = .milliseconds(400)
        }) { server in
            let version = try #require(server.snapshots.snapshot?.version)
            let connection = try RawConnection(path: server.socketPath)
            try connection.send(
                WireRequest(callId: 1, minSnapshotVersion: version + 1, deadlineMs: 1500, method: .check(explorerCheck)))
            let answer = try #require(try await connection.readResponse(timeout: .seconds(5)), "closed while waiting")
            #expect(answer.status.code == .failedPrecondition)
            // Sent at once: the idle timeout runs again from the answer.
            try connection.send(WireRequest(callId: 2, method: .check(.seatType(user: "u-admin"))))
            let next = try #require(try await connection.readResponse())
            #expect(next.callId == 2 && next.status.code == .ok)
        }
    }

    /// Defect 12: a sender trickling one byte at a time is cut off at the frame timeout,
    /// with DEADLINE_EXCEEDED, while others are served.
    @Test func aSlowSenderIsCutOffAtTheFrameTimeout() async throws {
        try await withServer(configure: {
            $0.frameTimeout = .milliseconds(400)
            $0.idleTimeout = .seconds(60)
        }) { server in
            let slow = try RawConnection(path: server.socketPath)
            var frame: [UInt8] = []
            WireRequest(callId: 7, method: .check(.seatType(user: "u-admin"))).append(to: &frame)
            let started = ContinuousClock.now
            var cutOff = false
            for byte in frame {
                do {
                    try slow.send([byte])
                } catch {
                    cutOff = true
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
                if ContinuousClock.now - started > .seconds(3) { break }
            }
            let answer = try #require(try await slow.readResponse(timeout: .seconds(5)))
            #expect(answer.callId == 0 && answer.status.code == .deadlineExceeded, "\(answer.status)")
            #expect(try await slow.readsEndOfStream())
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .milliseconds(350) && elapsed < .seconds(4), "cut off after \(elapsed) (\(cutOff))")
            let client = try await server.client()
            try await expectServing(client)
            await client.close()
        }
    }

    /// Defect 9: at graceful shutdown a request waiting for a snapshot version is answered
    /// UNAVAILABLE at once (it used to wait out its deadline).
    @Test func shutdownAnswersAWaitingRequestUnavailableAtOnce() async throws {
        let server = try await RunningServer.start(reloading: .init(), configure: noAutomaticReload)
        let version = try #require(server.snapshots.snapshot?.version)
        let connection = try RawConnection(path: server.socketPath)
        try connection.send(
            WireRequest(callId: 1, minSnapshotVersion: version + 1, deadlineMs: 20_000, method: .check(explorerCheck)))
        try await eventually(.seconds(5), "the request waits") { server.snapshots.waitingRequests == 1 }
        let started = ContinuousClock.now
        await server.group.triggerGracefulShutdown()
        let answer = try #require(try await connection.readResponse(timeout: .seconds(5)))
        #expect(answer.callId == 1 && answer.status.code == .unavailable, "\(answer.status)")
        #expect(answer.status.message.contains("shutting down"))
        #expect(ContinuousClock.now - started < .seconds(10), "long before its 20 s deadline")
        #expect(try await connection.readsEndOfStream())
        try await server.waitForExit()
    }

    /// Defect 6: the output is checked per frame, so small frames with large answers do not
    /// overshoot the high-water mark; the input buffer returns to its base size after a
    /// large frame. (The session without sockets: the bytes owed are exact here.)
    @Test func outputStaysNearTheHighWaterMarkAndBuffersShrink() throws {
        let directory = try TestDirectory()
        var configuration = ServerConfiguration(socketPath: directory.file("s"), databasePath: directory.file("db"))
        configuration.writeBufferHighWaterMark = 16 * 1024
        configuration.writeBufferLowWaterMark = 8 * 1024
        let snapshots = SnapshotHolder(snapshot: Snapshot(workspace: sampleWorkspace(), version: 1))
        let context = ServerContext(
            configuration: configuration, snapshots: snapshots, reloader: nil, logger: LogCapture().logger(),
            reloadAllowed: { _ in true })
        let session = ConnectionSession(
            id: 1, context: context, now: .now, fastPath: nil, waker: ConnectionWaker { _ in }, peer: { nil })
        var bytes: [UInt8] = []
        for id in 1...200 {
            let checks = [WireRequest.Check](repeating: explorerCheck, count: 20)
            WireRequest(callId: UInt64(id), explain: true, method: .batch(checks)).append(to: &bytes)
        }
        bytes.withUnsafeBytes { session.received($0, now: .now) }
        session.process(now: .now)
        let owed = session.outputOwed
        #expect(owed >= configuration.writeBufferHighWaterMark)
        #expect(owed <= 2 * configuration.writeBufferHighWaterMark, "\(owed) bytes owed")
        #expect(!session.wantsRead)
        // Draining the output lets the rest through, a high-water mark at a time.
        var answered = 0
        let parser = FrameParser(maxPayloadLength: 1 << 24)
        while session.outputOwed > 0 {
            let pending = session.pendingOutput
            var offset = 0
            while case .frame(let frame) = parser.parse(UnsafeRawBufferPointer(rebasing: pending[offset...])) {
                offset += frame.length
                answered += 1
            }
            session.didSend(pending.count, now: .now)
            session.process(now: .now)
            #expect(session.outputOwed <= 2 * configuration.writeBufferHighWaterMark)
        }
        #expect(answered == 200)
        // A large frame grows the input buffer; once answered, it shrinks back.
        var large: [UInt8] = []
        let checks = [WireRequest.Check](repeating: .seatType(user: String(repeating: "u", count: 200)), count: 250)
        WireRequest(callId: 999, method: .batch(checks)).append(to: &large)
        #expect(large.count > ConnectionSession.baseInputCapacity)
        large.withUnsafeBytes { session.received($0, now: .now) }
        #expect(session.inputCapacity > ConnectionSession.baseInputCapacity)
        session.process(now: .now)
        session.didSend(session.pendingOutput.count, now: .now)
        #expect(session.inputCapacity == ConnectionSession.baseInputCapacity)
        #expect(session.outputCapacity <= ConnectionSession.baseOutputCapacity)
    }

    /// Defect 9: a connection handed to a loop that already stopped is closed, not leaked.
    @Test func aConnectionHandedToAStoppedLoopIsClosed() async throws {
        let directory = try TestDirectory()
        let configuration = ServerConfiguration(socketPath: directory.file("s"), databasePath: directory.file("db"))
        let context = ServerContext(
            configuration: configuration, snapshots: SnapshotHolder(), reloader: nil, logger: LogCapture().logger(),
            reloadAllowed: { _ in true })
        let loop = try EpollLoop(index: 0, context: context)
        let finished = ReadySignal()
        let thread = Thread { loop.run(); finished.succeed() }
        thread.start()
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[1]) }
        // Handed over as the loop stops: whether it runs before the stop, with it, or among
        // the tasks left at exit, the connection ends closed and counted out.
        context.connectionsOpen.add(1, ordering: .relaxed)
        let fd = pair[0]
        let queued = loop.execute { $0.adopt(fd, id: 1) }
        #expect(queued)
        loop.execute { $0.stop() }
        try await withTimeout(.seconds(5), "the loop stops") { try await finished.wait() }
        // The peer sees the end of the stream: the descriptor was closed (checking the fd
        // number itself would race with other tests reusing it).
        var byte: UInt8 = 0
        #expect(recv(pair[1], &byte, 1, Int32(MSG_DONTWAIT)) == 0, "the descriptor was closed")
        #expect(context.connectionsOpen.load(ordering: .relaxed) == 0)
        #expect(!loop.execute { _ in }, "a stopped loop takes no more tasks")
    }
}

// The socket file and the server's life: stale sockets replaced, live ones not stolen,
// non-sockets never deleted, permissions, graceful shutdown.

import AuthzClient
import AuthzEngine
import AuthzServer
import AuthzWire
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Leaves a socket file nobody listens on at `path` (what a crashed server leaves).
func makeStaleSocket(_ path: String) throws {
    #if canImport(Glibc)
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let fd = socket(AF_UNIX, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { throw TestFailure("socket(): errno \(errno)") }
    defer { close(fd) }
    let result = withUnixAddress(path) { bind(fd, $0, $1) }
    guard result == 0 else { throw TestFailure("bind(\(path)): errno \(errno)") }
}

@Suite("Socket lifecycle and shutdown")
struct LifecycleTests {
    @Test func aStaleSocketFileIsReplaced() async throws {
        let directory = try TestDirectory()
        try makeStaleSocket(directory.file("authz.sock"))
        #expect(isSocket(directory.file("authz.sock")))
        let server = try await RunningServer.start(directory: directory)
        let client = try await server.client()
        try await expectServing(client)
        #expect(server.logs.all.contains { $0.message.contains("stale socket") })
        await client.close()
        try await server.stop()
        #expect(!fileExists(server.socketPath))
    }

    @Test func aLiveSocketIsNotStolen() async throws {
        try await withServer { first in
            let inodeBefore = inode(first.socketPath)
            let second = SidecarServer(
                configuration: first.configuration, snapshots: SnapshotHolder(), logger: LogCapture().logger())
            do {
                try await withTimeout(.seconds(10), "second server") { try await second.run() }
                Issue.record("a second server ran on a live socket")
            } catch let error as ServerError {
                #expect(error.code == .socketInUse)
                #expect(error.message.contains(first.socketPath))
            }
            await #expect(throws: ServerError.self) { try await second.waitUntilListening() }
            // The first server's socket is untouched and it still serves.
            #expect(inode(first.socketPath) == inodeBefore)
            let client = try await first.client()
            try await expectServing(client)
            await client.close()
        }
    }

    @Test func aPathThatIsNotASocketIsNeverDeleted() async throws {
        let directory = try TestDirectory()
        let path = directory.file("authz.sock")
        try Data("precious".utf8).write(to: URL(fileURLWithPath: path))
        var configuration = ServerConfiguration(socketPath: path, databasePath: directory.file("missing.db"))
        configuration.shutdownGracePeriod = .seconds(1)
        let server = SidecarServer(configuration: configuration, snapshots: SnapshotHolder(), logger: LogCapture().logger())
        do {
            try await withTimeout(.seconds(10), "server") { try await server.run() }
            Issue.record("the server ran over a regular file")
        } catch let error as ServerError {
            #expect(error.code == .notASocket)
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "precious")
    }

    @Test func theSocketFileGetsItsModeAndGroup() async throws {
        try await withServer(configure: {
            $0.socketMode = 0o600
            $0.socketGroup = .id(UInt32(getegid()))
        }) { server in
            var info = stat()
            #expect(lstat(server.socketPath, &info) == 0)
            #expect(info.st_mode & 0o7777 == 0o600)
            #expect(info.st_gid == getegid())
        }
        try await withServer { server in
            var info = stat()
            #expect(lstat(server.socketPath, &info) == 0)
            #expect(info.st_mode & 0o7777 == 0o660, "the default mode")
        }
    }

    @Test func anUnknownSocketGroupFailsTheStartAndLeavesNoSocket() async throws {
        let directory = try TestDirectory()
        var configuration = ServerConfiguration(
            socketPath: directory.file("authz.sock"), databasePath: directory.file("missing.db"))
        configuration.socketGroup = .name("no-such-group-authz-test")
        let server = SidecarServer(configuration: configuration, snapshots: SnapshotHolder(), logger: LogCapture().logger())
        await #expect(throws: ServerError.self) {
            try await withTimeout(.seconds(10), "server") { try await server.run() }
        }
        #expect(!fileExists(configuration.socketPath))
    }

    @Test func gracefulShutdownFinishesTheRequestInFlightAndRemovesTheSocket() async throws {
        let server = try await RunningServer.start()
        let busy = try RawConnection(path: server.socketPath)
        let idle = try RawConnection(path: server.socketPath)
        var request: [UInt8] = []
        WireRequest(callId: 5, method: .check(.effectivePermission(.init(user: "u-editor", project: "p-revenue"))))
            .append(to: &request)
        // Half the request is in the server when shutdown starts.
        try busy.send(Array(request[..<7]))
        try await eventually(.seconds(5), "both connections registered") { server.server.status.connectionsOpen == 2 }
        // The server has read the half request (it is in its frame decoder, not in the kernel).
        try await waitUntilServerRead(busy)
        await server.group.triggerGracefulShutdown()
        // New connections are refused at once: the socket file is gone.
        try await eventually(.seconds(5), "socket file removed") { !fileExists(server.socketPath) }
        // The idle connection is closed; the busy one is waiting for the rest of its frame.
        #expect(try await idle.readsEndOfStream())
        try busy.send(Array(request[7...]))
        let response = try #require(await busy.readResponse())
        #expect(response.callId == 5)
        #expect(response.status.code == .ok)
        #expect(try await busy.readsEndOfStream(), "closed once its answer is flushed")
        try await server.waitForExit()
        #expect(!fileExists(server.socketPath))
        #expect(server.logs.all.contains { $0.message == "stopped" })
    }

    @Test func gracefulShutdownIsBoundedByTheGracePeriod() async throws {
        let server = try await RunningServer.start(configure: { $0.shutdownGracePeriod = .milliseconds(300) })
        let stalled = try RawConnection(path: server.socketPath)
        try stalled.send([0, 0, 0, 0, 50, 1, 2])  // a frame that never completes
        try await eventually(.seconds(5), "connection registered") { server.server.status.connectionsOpen == 1 }
        try await waitUntilServerRead(stalled)
        let started = ContinuousClock.now
        try await server.stop()
        let took = ContinuousClock.now - started
        #expect(took >= .milliseconds(250) && took < .seconds(5), "took \(took)")
        #expect(try await stalled.readsEndOfStream())
        #expect(!fileExists(server.socketPath))
    }

    @Test func cancellationClosesEverythingAtOnce() async throws {
        let server = try await RunningServer.start(configure: { $0.shutdownGracePeriod = .seconds(30) })
        let stalled = try RawConnection(path: server.socketPath)
        try stalled.send([0, 0, 0, 0, 50, 1])
        try await eventually(.seconds(5), "connection registered") { server.server.status.connectionsOpen == 1 }
        try await waitUntilServerRead(stalled)
        server.task.cancel()
        let started = ContinuousClock.now
        try? await server.waitForExit()
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(try await stalled.readsEndOfStream())
        #expect(!fileExists(server.socketPath))
    }
}

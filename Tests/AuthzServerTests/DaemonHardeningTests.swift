// Issue 9's defects that show as CPU and log lines of the real authzd process, on both
// transports.

import AuthzClient
import AuthzServer
import AuthzWire
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// CPU seconds (user + system) the process `pid` has used so far.
func processCPUSeconds(_ pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// The CPU the process uses over `interval`.
func cpuUsed(by pid: Int32, over interval: Duration) async throws -> Double {
    let before = try #require(processCPUSeconds(pid))
    try await Task.sleep(for: interval)
    let after = try #require(processCPUSeconds(pid))
    return after - before
}

@Suite(
    "authzd: hardening", .serialized,
    .enabled(if: authzdPath != nil, "the authzd executable is built by `swift test` next to the tests"))
struct DaemonHardeningTests {
    /// Defect 1: a client that hangs up while its request waits for a newer snapshot costs
    /// no CPU (it used to spin a loop at 100% until the deadline).
    @Test(arguments: ["epoll", "nio"])
    func aHungUpWaitingClientCostsNoCPU(transport: String) async throws {
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        let database = directory.file("authz.db")
        let version = try makeDatabase(database)
        let daemon = try Daemon(
            arguments: ["--db", database, "--socket", socket, "--no-watch", "--poll-interval", "0", "--transport", transport],
            directory: directory)
        let client = try await connectWhenListening(socket, daemon)
        let connection = try RawConnection(path: socket)
        try connection.send(
            WireRequest(callId: 1, minSnapshotVersion: version + 1, deadlineMs: 30_000, method: .check(.seatType(user: "u-admin"))))
        try await Task.sleep(for: .milliseconds(200))
        connection.closeSocket()
        try await Task.sleep(for: .milliseconds(200))
        let used = try await cpuUsed(by: daemon.process.processIdentifier, over: .seconds(2))
        #expect(used < 0.3, "authzd used \(used) s of CPU in 2 s after the client hung up")
        #expect(try await client.status().connectionsOpen == 1, "only the status client is left")
        await client.close()
        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(try await daemon.waitForExit() == 0, "\(daemon.stderr)")
    }

    /// Defect 2: out of file descriptors, the listener neither spins nor floods the log, and
    /// service resumes once connections close.
    @Test(arguments: ["epoll", "nio"])
    func runningOutOfFileDescriptorsNeitherSpinsNorFloodsTheLog(transport: String) async throws {
        raiseOpenFileLimit(to: 4096)
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        let database = directory.file("authz.db")
        _ = try makeDatabase(database)
        let daemon = try Daemon(
            arguments: ["--db", database, "--socket", socket, "--transport", transport, "--event-loops", "2"],
            directory: directory)
        let client = try await connectWhenListening(socket, daemon)
        await client.close()
        let pid = daemon.process.processIdentifier
        let limited = try runCommand("/usr/bin/prlimit", ["--pid", "\(pid)", "--nofile=128:128"])
        #expect(limited.status == 0, "\(limited.stderr)")

        var connections: [RawConnection] = []
        for _ in 0..<200 { connections.append(try RawConnection(path: socket)) }
        try await Task.sleep(for: .milliseconds(500))
        let used = try await cpuUsed(by: pid, over: .seconds(2))
        #expect(used < 0.5, "authzd used \(used) s of CPU in 2 s while out of descriptors")
        let lines = daemon.stderr.split(separator: "\n").filter { $0.contains("descriptor") || $0.contains("accept") }
        #expect(lines.count <= 5, "\(lines.count) log lines: \(lines.prefix(5))")
        if transport == "epoll" {
            #expect(lines.contains { $0.contains("cannot accept connections") }, "the exhaustion is reported once")
            // The connections shed while out of descriptors were told why.
            var shed = 0
            for connection in connections.suffix(40) {
                if let answer = try? await connection.readResponse(timeout: .milliseconds(50)),
                    answer.status.code == .resourceExhausted
                {
                    shed += 1
                }
            }
            #expect(shed > 0, "shed connections are answered RESOURCE_EXHAUSTED")
        }
        #expect(daemon.process.isRunning)

        connections.removeAll()  // closes them all
        try await eventuallyAsync(.seconds(10), "service resumes") {
            guard let client = try? await SidecarClient.connect(socketPath: socket) else { return false }
            defer { Task { await client.close() } }
            return (try? await client.seatType(user: "u-admin"))?.result.seat == .paidAuthor
        }
        kill(pid, SIGTERM)
        #expect(try await daemon.waitForExit() == 0, "\(daemon.stderr)")
    }
}

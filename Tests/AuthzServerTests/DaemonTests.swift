// The authzd executable itself (built next to the test bundle): flags and environment,
// --require-database, SIGTERM → graceful exit 0 with the socket file removed.

import AuthzClient
import AuthzServer
import AuthzWire
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The authzd binary built beside this test bundle, if there is one.
let authzdPath: String? = {
    let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        .deletingLastPathComponent()
    var candidates = [bundleDirectory.appendingPathComponent("authzd").path]
    if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        var directory = URL(fileURLWithPath: executable).deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(directory.appendingPathComponent("authzd").path)
            directory = directory.deletingLastPathComponent()
        }
    }
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}()

/// A running authzd process with its stderr captured to a file.
final class Daemon {
    let process = Process()
    let stderrPath: String

    init(arguments: [String], environment: [String: String] = [:], directory: TestDirectory) throws {
        guard let authzdPath else { throw TestFailure("authzd was not built next to the tests") }
        stderrPath = directory.file("stderr.log")
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: authzdPath)
        process.arguments = arguments
        var inherited = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("AUTHZD_") }
        inherited.merge(environment) { _, new in new }
        process.environment = inherited
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Waits (bounded) for the process to exit; returns its status.
    func waitForExit(_ limit: Duration = .seconds(15)) async throws -> Int32 {
        try await eventually(limit, "authzd exits") { !process.isRunning }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { process.terminate() }
    }
}

@Suite("authzd", .enabled(if: authzdPath != nil, "the authzd executable is built by `swift test` next to the tests"))
struct DaemonTests {
    @Test func servesWithAMissingDatabaseAndExitsZeroOnSIGTERM() async throws {
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        // The database from the environment, the socket from a flag.
        let daemon = try Daemon(
            arguments: ["--socket", socket, "--log-format", "json"],
            environment: ["AUTHZD_DB": directory.file("missing.db"), "AUTHZD_SOCKET": directory.file("ignored.sock")],
            directory: directory)
        try await eventually(.seconds(10), "socket appears") { isSocket(socket) || !daemon.process.isRunning }
        #expect(daemon.process.isRunning, "\(daemon.stderr)")
        #expect(!fileExists(directory.file("ignored.sock")), "the flag wins over AUTHZD_SOCKET")

        let client = try await SidecarClient.connect(socketPath: socket)
        let status = try await client.status()
        #expect(status.snapshotVersion == 0)
        #expect(status.lastLoadError.contains("missing.db"))
        let response = try await client.call(WireRequest(callId: 0, method: .check(.seatType(user: "u"))))
        #expect(response.status.code == .unavailable)
        await client.close()

        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(try await daemon.waitForExit() == 0, "\(daemon.stderr)")
        #expect(!fileExists(socket))
        let lines = daemon.stderr.split(separator: "\n")
        #expect(!lines.isEmpty)
        #expect(lines.allSatisfy { $0.hasPrefix("{\"time\":") && $0.hasSuffix("}") }, "\(lines)")
        #expect(daemon.stderr.contains("UNAVAILABLE until a snapshot is loaded"))
    }

    @Test func requireDatabaseExitsNonZeroWithAClearMessage() async throws {
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        let daemon = try Daemon(
            arguments: ["--db", directory.file("missing.db"), "--socket", socket, "--require-database"],
            directory: directory)
        let status = try await daemon.waitForExit()
        #expect(status != 0)
        #expect(daemon.stderr.contains("cannot load the workspace database"))
        #expect(daemon.stderr.contains("missing.db"))
        #expect(!fileExists(socket))
    }

    @Test func servesADatabaseAndRefusesToStealItsSocket() async throws {
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        let database = directory.file("authz.db")
        let version = try makeDatabase(database)
        let first = try Daemon(arguments: ["--db", database, "--socket", socket], directory: directory)
        try await eventually(.seconds(10), "socket appears") { isSocket(socket) || !first.process.isRunning }
        let client = try await SidecarClient.connect(socketPath: socket)
        let reply = try await client.seatType(user: "u-admin")
        #expect(reply.snapshotVersion == version)
        #expect(reply.result.seat == .paidAuthor)

        let secondDirectory = try TestDirectory()
        let second = try Daemon(arguments: ["--db", database, "--socket", socket], directory: secondDirectory)
        #expect(try await second.waitForExit() != 0)
        #expect(second.stderr.contains("already serving"), "\(second.stderr)")
        _ = try await client.seatType(user: "u-admin")  // the first one still serves
        await client.close()

        kill(first.process.processIdentifier, SIGINT)
        #expect(try await first.waitForExit() == 0, "\(first.stderr)")
        #expect(!fileExists(socket))
    }

    @Test func badSettingsExitWithAUsageError() async throws {
        let directory = try TestDirectory()
        let daemon = try Daemon(
            arguments: ["--socket", directory.file("s.sock"), "--db", directory.file("d.db"), "--socket-mode", "rw"],
            directory: directory)
        #expect(try await daemon.waitForExit() == 64)
        #expect(daemon.stderr.contains("--socket-mode: 'rw'"))
    }
}

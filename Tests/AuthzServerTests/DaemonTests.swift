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

/// authzctl, built next to authzd.
let authzctlPath: String? = authzdPath.map { String($0.dropLast("authzd".count)) + "authzctl" }.flatMap {
    FileManager.default.isExecutableFile(atPath: $0) ? $0 : nil
}

/// Runs a command to completion; returns its exit status, stdout and stderr.
func runCommand(_ executable: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try launch(process)
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}

/// Connects once the daemon listens (its socket file appears at bind, just before listen).
func connectWhenListening(_ socket: String, _ daemon: Daemon) async throws -> SidecarClient {
    // A debug build starting beside the whole parallel suite can take a while.
    let deadline = ContinuousClock.now + .seconds(30)
    while true {
        do {
            return try await SidecarClient.connect(socketPath: socket)
        } catch {
            guard ContinuousClock.now < deadline, daemon.process.isRunning else { throw error }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// A running authzd process with its stderr captured to a file.
final class Daemon {
    let process = Process()
    let stderrPath: String

    init(
        arguments: [String], environment: [String: String] = [:], directory: TestDirectory, name: String = "stderr.log"
    ) throws {
        guard let authzdPath else { throw TestFailure("authzd was not built next to the tests") }
        stderrPath = directory.file(name)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: authzdPath)
        process.arguments = arguments
        var inherited = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("AUTHZD_") }
        inherited.merge(environment) { _, new in new }
        process.environment = inherited
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        process.standardOutput = FileHandle.nullDevice
        try launch(process)
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

    @Test func sighupForcesAReload() async throws {
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        let database = directory.file("authz.db")
        let version = try makeDatabase(database)
        let daemon = try Daemon(
            arguments: ["--db", database, "--socket", socket, "--no-watch", "--poll-interval", "0"], directory: directory)
        let client = try await connectWhenListening(socket, daemon)
        let committed = try Writer(database).touch()
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await client.status().snapshotVersion == version, "no watch, no polling: nothing reloads")
        kill(daemon.process.processIdentifier, SIGHUP)
        try await eventuallyAsync(.seconds(5), "SIGHUP reloads") { try await client.status().snapshotVersion == committed }
        #expect(daemon.process.isRunning)
        await client.close()
        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(try await daemon.waitForExit() == 0, "\(daemon.stderr)")
        #expect(daemon.stderr.contains("SIGHUP"))
    }

    @Test func authzctlReloadPrintsTheVersionNowServed() async throws {
        let authzctl = try #require(authzctlPath)
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        let database = directory.file("authz.db")
        try makeDatabase(database)
        let daemon = try Daemon(
            arguments: ["--db", database, "--socket", socket, "--no-watch", "--poll-interval", "0"], directory: directory)
        try await connectWhenListening(socket, daemon).close()
        let committed = try Writer(database).touch()
        let result = try runCommand(authzctl, ["reload", "--socket", socket])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "\(committed)\n")
        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    /// The readiness probe of deploy/kubernetes: `authzctl status --ready` fails (3) while
    /// the daemon has no snapshot, even though it answers Status, and passes once it has.
    @Test func authzctlStatusReadyFailsUntilASnapshotIsLoaded() async throws {
        let authzctl = try #require(authzctlPath)
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        let database = directory.file("authz.db")
        let daemon = try Daemon(
            arguments: ["--db", database, "--socket", socket, "--no-watch", "--poll-interval", "0"], directory: directory)
        try await connectWhenListening(socket, daemon).close()

        let plain = try runCommand(authzctl, ["status", "--socket", socket])
        #expect(plain.status == 0, "without --ready, status only needs an answer: \(plain.stderr)")
        let notReady = try runCommand(authzctl, ["status", "--socket", socket, "--ready"])
        #expect(notReady.status == 3, "\(notReady.stdout) \(notReady.stderr)")
        #expect(notReady.stdout.contains("\"snapshot_version\": 0"), "the status is still printed: \(notReady.stdout)")
        #expect(notReady.stderr.contains("not ready"), "\(notReady.stderr)")
        #expect(notReady.stderr.contains("authz.db"), "the last load error names the database: \(notReady.stderr)")

        let version = try makeDatabase(database)
        let reload = try runCommand(authzctl, ["reload", "--socket", socket])
        #expect(reload.status == 0, "\(reload.stderr)")
        let ready = try runCommand(authzctl, ["status", "--socket", socket, "--ready"])
        #expect(ready.status == 0, "\(ready.stderr)")
        #expect(ready.stdout.contains("\"snapshot_version\": \(version)"), "\(ready.stdout)")

        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(try await daemon.waitForExit() == 0, "\(daemon.stderr)")
        let gone = try runCommand(authzctl, ["status", "--socket", socket, "--ready"])
        #expect(gone.status == 1, "no daemon: cannot ask (\(gone.stderr))")
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to run a client as another Unix user"))
    func reloadFromAnotherUnixUserIsDenied() async throws {
        let authzctl = try #require(authzctlPath)
        let directory = try TestDirectory()
        chmod(directory.path, 0o755)
        // A copy the other user can execute wherever the build lives.
        let client = directory.file("authzctl")
        try FileManager.default.copyItem(atPath: authzctl, toPath: client)
        chmod(client, 0o755)
        let socket = directory.file("authz.sock")
        let database = directory.file("authz.db")
        let version = try makeDatabase(database)
        let daemon = try Daemon(
            arguments: ["--db", database, "--socket", socket, "--socket-mode", "0666"], directory: directory)
        try await connectWhenListening(socket, daemon).close()
        let denied = try runCommand(
            "/usr/bin/setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups", client, "reload", "--socket", socket])
        #expect(denied.status == 1)
        #expect(denied.stderr.contains("PERMISSION_DENIED"), "\(denied.stderr)")
        #expect(denied.stderr.contains("Unix user 65534"), "\(denied.stderr)")
        // The same user may still ask questions; root (the daemon's user) may reload.
        let status = try runCommand(
            "/usr/bin/setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups", client, "status", "--socket", socket])
        #expect(status.status == 0, "\(status.stderr)")
        let allowed = try runCommand(client, ["reload", "--socket", socket])
        #expect(allowed.stdout == "\(version)\n", "\(allowed.stderr)")
        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    @Test func fourDaemonsOnOneDatabaseServeACommitWithin100ms() async throws {
        let directory = try TestDirectory()
        let database = directory.file("authz.db")
        let version = try makeDatabase(database)
        var daemons: [Daemon] = []
        var clients: [SidecarClient] = []
        for index in 0..<4 {
            let socket = directory.file("authz\(index).sock")
            let daemon = try Daemon(
                arguments: ["--db", database, "--socket", socket], directory: directory, name: "stderr\(index).log")
            daemons.append(daemon)
            let client = try await connectWhenListening(socket, daemon)
            #expect(try await client.status().snapshotVersion == version)
            clients.append(client)
        }
        // Each round: one commit, then how long until all four answer from it.
        var rounds: [Duration] = []
        let writer = try Writer(database)
        for _ in 0..<3 {
            let committed = try writer.grant("u-explorer", "p-secret", .canView)
            let start = ContinuousClock.now
            let latest = try await withThrowingTaskGroup(of: Duration.self) { group in
                for client in clients {
                    group.addTask {
                        while try await client.status().snapshotVersion < committed {
                            try await Task.sleep(for: .milliseconds(1))
                        }
                        return ContinuousClock.now - start
                    }
                }
                return try await group.reduce(Duration.zero) { max($0, $1) }
            }
            rounds.append(latest)
            try await Task.sleep(for: .milliseconds(50))
        }
        print("four daemons: commit visible in all four after \(rounds)")
        // 100 ms is the requirement; scripts/test.sh checks it with this test running alone
        // (AUTHZ_STRICT_TIMING=1). Inside the parallel suite on 2 cores, the other tests'
        // load decides the latency, so only a gross bound applies there.
        let strict = ProcessInfo.processInfo.environment["AUTHZ_STRICT_TIMING"] == "1"
        let bound: Duration = strict ? .milliseconds(100) : .seconds(2)
        #expect(rounds.allSatisfy { $0 <= bound }, "\(rounds)")
        for client in clients { await client.close() }
        for daemon in daemons { kill(daemon.process.processIdentifier, SIGTERM) }
        for daemon in daemons { #expect(try await daemon.waitForExit() == 0) }
    }

    @Test func theSocketAppearsOnlyOnceItAcceptsWithItsPermissions() async throws {
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        let database = directory.file("authz.db")
        try makeDatabase(database)
        let daemon = try Daemon(
            arguments: ["--db", database, "--socket", socket, "--socket-mode", "0600"], directory: directory)
        // Catch the first moment the path exists: it must already listen, with its mode.
        let deadline = ContinuousClock.now + .seconds(10)
        while !isSocket(socket) {
            guard ContinuousClock.now < deadline, daemon.process.isRunning else { throw TestFailure("no socket") }
            usleep(200)
        }
        var info = stat()
        #expect(lstat(socket, &info) == 0 && info.st_mode & 0o777 == 0o600)
        let client = try await SidecarClient.connect(socketPath: socket)
        #expect(try await client.status().snapshotVersion > 0)
        await client.close()
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".bind") }
        #expect(leftovers.isEmpty, "staging names left behind: \(leftovers)")
        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        #expect(!fileExists(socket))
    }
}

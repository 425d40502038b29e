// The authzd executable and signals (issue 9, defects 9 and 11): SIGHUPs coalesce, a
// SIGHUP during the initial load is not fatal, and a closed stderr pipe is not SIGPIPE.

import AuthzClient
import AuthzServer
import Foundation
import SQLiteTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The files a process has open (Linux: /proc/PID/fd).
func openFiles(_ pid: Int32) -> [String] {
    let directory = "/proc/\(pid)/fd"
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return names.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + $0) }
}

/// The lines of a daemon's log that report a snapshot load.
func loadLines(_ log: String) -> Int {
    log.split(separator: "\n").filter { $0.contains("reloaded the workspace snapshot") }.count
}

@Suite(
    "authzd: signals",
    .enabled(if: authzdPath != nil, "the authzd executable is built by `swift test` next to the tests"))
struct DaemonSignalTests {
    /// Defect 11: each SIGHUP was its own full load, one after the other (200 SIGHUPs on
    /// the large workspace meant 2.5 minutes of back-to-back loads). Signals arriving while
    /// a load runs or is queued collapse into one more load. The first load is held here
    /// (SQLite's PENDING lock byte is held, as by a writer about to write: a connection that
    /// starts reading waits in SQLite's busy handler, up to 5 s) while the other 199
    /// arrive, so each of them is delivered on its own however busy the machine is.
    @Test func aBurstOf200SIGHUPsCausesAHandfulOfLoads() async throws {
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        let database = directory.file("authz.db")
        try makeDatabase(database)
        // Marks the file as a Litestream follower's: authzd's version probe then keeps no
        // connection open between checks. A connection of authzd's kept open would let its
        // loads' connections read without asking the file's locks (SQLite shares a process's
        // SHARED lock between its connections), and the PENDING lock below would hold
        // nothing.
        #expect(FileManager.default.createFile(atPath: database + "-txid", contents: Data("0\n".utf8)))
        let daemon = try Daemon(
            arguments: ["--db", database, "--socket", socket, "--no-watch", "--poll-interval", "0"], directory: directory)
        // A debug build starting beside the whole parallel suite can be slow.
        try await eventually(.seconds(30), "authzd listens") { isSocket(socket) || !daemon.process.isRunning }
        let client = try await connectWhenListening(socket, daemon)
        let committed = try Writer(database).touch()
        let pending = try PendingLock(database)
        // Lets the held load go on; also if the test fails first, so that the daemon is
        // not left waiting.
        func release() { pending.release() }
        defer { release() }
        // The load this starts cannot end before the holder lets go.
        kill(daemon.process.processIdentifier, SIGHUP)
        for _ in 0..<199 {
            kill(daemon.process.processIdentifier, SIGHUP)
            usleep(2000)
        }
        release()
        try await eventuallyAsync(.seconds(10), "the commit is served") {
            try await client.status().snapshotVersion == committed
        }
        // Until the loads stop: no new load line for half a second (bounded).
        var loads = loadLines(daemon.stderr)
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(500))
            let now = loadLines(daemon.stderr)
            if now == loads { break }
            loads = now
        }
        #expect(daemon.process.isRunning)
        print("200 SIGHUPs: \(loads) successful loads")
        #expect(loads >= 1)
        #expect(loads <= 3, "200 SIGHUPs caused \(loads) loads")
        let signalLines = daemon.stderr.split(separator: "\n").filter { $0.contains("SIGHUP") }.count
        #expect(signalLines <= 6, "\(signalLines) log lines about SIGHUP")
        await client.close()
        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(try await daemon.waitForExit() == 0, "\(daemon.stderr)")
    }

    /// Defect 9: the SIGHUP handler was installed only once the service group ran, after
    /// the initial load, so a SIGHUP during that load killed the daemon (the default
    /// action). The load is held here by a writer with an exclusive lock on the database.
    @Test func aSIGHUPDuringTheInitialLoadIsNotFatal() async throws {
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        let database = directory.file("authz.db")
        let version = try makeDatabase(database)
        // Holds the database until closed: readers wait (busy timeout) for the lock.
        var holder: RawDatabase? = try RawDatabase(database)
        try holder?.exec("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE meta SET version = version; COMMIT")
        let daemon = try Daemon(
            arguments: ["--db", database, "--socket", socket, "--no-watch", "--poll-interval", "0"], directory: directory)
        try await eventually(.seconds(30), "the initial load opens the database") {
            openFiles(daemon.process.processIdentifier).contains(database) || !daemon.process.isRunning
        }
        // The load waits for the lock (up to SQLite's 5 s busy timeout), so these land in it.
        kill(daemon.process.processIdentifier, SIGHUP)
        let duringTheLoad = !isSocket(socket)
        for _ in 0..<4 {
            try await Task.sleep(for: .milliseconds(50))
            kill(daemon.process.processIdentifier, SIGHUP)
        }
        try await Task.sleep(for: .milliseconds(100))
        #expect(daemon.process.isRunning, "\(daemon.stderr)")
        if !duringTheLoad { print("note: the initial load had ended before the first SIGHUP (a very slow machine)") }
        holder = nil
        let client = try await connectWhenListening(socket, daemon)
        try await eventuallyAsync(.seconds(10), "serves the database") {
            try await client.status().snapshotVersion == version
        }
        #expect(try await client.seatType(user: "u-admin").result.seat == .paidAuthor)
        // The SIGHUPs were kept, not lost: they ask for one load once the daemon runs.
        try await eventually(.seconds(5), "the SIGHUPs are served") {
            daemon.stderr.contains("SIGHUP: reloading") && loadLines(daemon.stderr) >= 1
        }
        await client.close()
        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(try await daemon.waitForExit() == 0, "\(daemon.stderr)")
    }

    /// Defect 9: SIGPIPE was not ignored, so a log line written to a stderr pipe nobody
    /// reads any more killed the daemon.
    @Test func aClosedStderrPipeIsNotFatal() async throws {
        guard let authzdPath else { return }
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        let database = directory.file("authz.db")
        try makeDatabase(database)
        // A pipe no other child can inherit (close-on-exec); the daemon gets its write end.
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw TestFailure("pipe: errno \(errno)") }
        for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: authzdPath)
        process.arguments = ["--db", database, "--socket", socket, "--no-watch", "--poll-interval", "0"]
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("AUTHZD_") }
        process.standardError = FileHandle(fileDescriptor: ends[1], closeOnDealloc: false)  // closed below, once
        process.standardOutput = FileHandle.nullDevice
        try launch(process)
        defer { if process.isRunning { process.terminate() } }
        close(ends[1])
        try await eventually(.seconds(30), "socket appears") { isSocket(socket) || !process.isRunning }
        // Nobody reads stderr any more; then make the daemon log.
        close(ends[0])
        kill(process.processIdentifier, SIGHUP)
        try await Task.sleep(for: .milliseconds(300))
        try #require(
            process.isRunning,
            "authzd died: \(process.terminationReason == .uncaughtSignal ? "signal" : "exit") \(process.terminationStatus)")
        let client = try await SidecarClient.connect(socketPath: socket)
        #expect(try await client.seatType(user: "u-admin").result.seat == .paidAuthor)
        await client.close()
        kill(process.processIdentifier, SIGTERM)
        try await eventually(.seconds(15), "authzd exits") { !process.isRunning }
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
    }
}

/// SQLite's PENDING lock byte of a database file, held as a writer about to write holds it
/// (an open-file-description lock, so no other descriptor of this process releases it): a
/// connection that starts reading the file meanwhile waits in its busy handler.
final class PendingLock {
    private let descriptor: Int32
    private var held = true
    /// os_unix.c's PENDING_BYTE.
    static let pendingByte: off_t = 0x4000_0000
    /// F_OFD_SETLK (<fcntl.h>, Linux): not imported into Swift.
    static let ofdSetLock: Int32 = 37

    init(_ path: String) throws {
        descriptor = open(path, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { throw TestFailure("open(\(path)): errno \(errno)") }
        var request = flock()
        request.l_type = Int16(F_WRLCK)
        request.l_whence = Int16(SEEK_SET)
        request.l_start = Self.pendingByte
        request.l_len = 1
        guard fcntl(descriptor, Self.ofdSetLock, &request) == 0 else {
            let code = errno
            close(descriptor)
            throw TestFailure("locking the PENDING byte of \(path): errno \(code)")
        }
    }

    /// Lets readers in (once).
    func release() {
        guard held else { return }
        held = false
        close(descriptor)
    }

    deinit { release() }
}

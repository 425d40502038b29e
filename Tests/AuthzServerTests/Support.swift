// Test support: temporary directories, databases, a real server run in-process under a
// ServiceGroup, a log capture, a raw socket for sending arbitrary bytes, and timeouts.
// Every wait is bounded.

import AuthzClient
import AuthzDocument
import AuthzEngine
import AuthzServer
import AuthzStore
import AuthzWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Time limits

/// Runs `body`, failing with a timeout after `limit`; the body is cancelled then.
func withTimeout<T: Sendable>(
    _ limit: Duration = .seconds(10), _ what: String = "operation",
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw TestFailure("\(what) did not finish within \(limit)")
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw TestFailure("\(what): no result") }
        return first
    }
}

/// Polls `condition` every few milliseconds until it holds or `limit` passes.
func eventually(
    _ limit: Duration = .seconds(5), _ what: String, _ condition: () throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + limit
    while try !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("\(what): still false after \(limit)") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

// MARK: - Files

/// A short temporary directory (socket paths are limited to 107 bytes), removed on release.
final class TestDirectory: Sendable {
    let path: String

    init() throws {
        let name = "/tmp/authz-srv-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        try FileManager.default.createDirectory(atPath: name, withIntermediateDirectories: false)
        path = name
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A file's bytes, read with POSIX calls. Foundation's `Data(contentsOf:)` leaks its 4 KiB
/// read buffer for an empty file (LeakSanitizer, in the fuzz corpus test), and the corpus
/// has empty files on purpose.
func readFileBytes(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count == 0 { return bytes }
        if count < 0 {
            if errno == EINTR { continue }
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        bytes.append(contentsOf: chunk[0..<count])
    }
}

/// Starts `process`, one launch at a time in this test process: Foundation's
/// `Process.run()` on Linux crashed once with a bad pointer in its memmove while the
/// parallel suites started several daemons at the same moment (a fresh-clone run of the test
/// command, in `fourDaemonsOnOneDatabaseServeACommitWithin100ms`).
func launch(_ process: Process) throws {
    try processLaunches.withLock { _ in try process.run() }
}

private let processLaunches = Mutex(())

func fileExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

func isSocket(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK
}

func inode(_ path: String) -> UInt64? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return UInt64(info.st_ino)
}

/// Imports `workspace` into a new database at `path`; returns its snapshot version.
@discardableResult
func makeDatabase(_ path: String, _ workspace: Workspace = sampleWorkspace()) throws -> UInt64 {
    let store = try WorkspaceStore.open(path: path, create: true)
    return try store.importWorkspace(workspace)
}

/// A small valid workspace: every role kind, a group, custom and built-in asset groups,
/// grants to users and to a group.
func sampleWorkspace() -> Workspace {
    Workspace(
        settings: WorkspaceSettings(plan: .enterprise, allowedDomains: ["acme.com"], defaultDomainRole: .viewer),
        users: [
            User(id: "u-admin", email: "admin@acme.com", origin: .manual, role: .admin),
            User(id: "u-editor", email: "editor@acme.com", origin: .manual, role: .editor),
            User(id: "u-viewer", email: "viewer@acme.com", origin: .domain),
            User(id: "u-explorer", email: "explorer@acme.com", origin: .manual, role: .explorer),
            User(id: "u-guest", email: "guest@partner.io", origin: .invite),
            User(id: "u-gone", email: "gone@acme.com", origin: .manual, role: .editor, active: false),
        ],
        groups: [
            Group(id: "g-eng", name: "Engineering", members: ["u-editor", "u-viewer", "u-explorer"])
        ],
        assets: [
            Asset(id: "a-warehouse", kind: .dataConnection, name: "Warehouse", groups: ["g-eng"]),
            Asset(id: "a-open", kind: .externalFile, name: "Open data", groups: ["public"]),
        ],
        projects: [
            Project(
                id: "p-revenue", owner: "u-admin", workspaceAccess: .canView, publicAccess: .canViewApp,
                grants: [.group("g-eng", .canEdit), .user("u-guest", .canView)], assets: ["a-warehouse"]),
            Project(id: "p-secret", grants: [.user("u-editor", .fullAccess)]),
        ])
}

/// The sample workspace with one grant added: u-explorer gets `level` on p-secret.
/// Snapshots of different versions then disagree on one check.
func workspace(secretLevelForExplorer level: Level) -> Workspace {
    var workspace = sampleWorkspace()
    workspace.projects[1].grants.append(.user("u-explorer", level))
    return workspace
}

// MARK: - Logs

/// One captured log line.
struct LogLine: Sendable {
    var level: Logger.Level
    var message: String
    var metadata: [String: String]
}

/// Collects log lines from every logger made with `logger(level:)`.
final class LogCapture: Sendable {
    private let lines = Mutex<[LogLine]>([])

    var all: [LogLine] { lines.withLock { $0 } }

    func append(_ line: LogLine) { lines.withLock { $0.append(line) } }

    func logger(level: Logger.Level = .info) -> Logger {
        var logger = Logger(label: "authzd-test") { _ in CapturingLogHandler(capture: self) }
        logger.logLevel = level
        return logger
    }

    /// Lines naming a connection, grouped by connection id.
    var linesByConnection: [String: [LogLine]] {
        Dictionary(grouping: all.filter { $0.metadata["connection"] != nil }) { $0.metadata["connection"] ?? "" }
    }
}

struct CapturingLogHandler: LogHandler {
    let capture: LogCapture
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        capture.append(
            LogLine(
                level: event.level, message: "\(event.message)",
                metadata: merged.mapValues { "\($0)" }))
    }
}

// MARK: - A real server

/// The transport the server tests run on: the default (epoll), or the one named by
/// AUTHZ_TEST_TRANSPORT (scripts/test.sh runs the server tests once more with `nio`).
let testTransport: Transport = {
    guard let name = ProcessInfo.processInfo.environment["AUTHZ_TEST_TRANSPORT"] else { return .epoll }
    guard let transport = Transport(rawValue: name) else { fatalError("AUTHZ_TEST_TRANSPORT=\(name): use epoll or nio") }
    return transport
}()

/// A `SidecarServer` running under a `ServiceGroup` on a socket in a temp directory, on
/// an event loop of its own (shared with its test's clients), so that one test's load
/// does not delay another test's timers.
final class RunningServer: Sendable {
    let directory: TestDirectory
    let eventLoopGroup: MultiThreadedEventLoopGroup
    let configuration: ServerConfiguration
    let snapshots: SnapshotHolder
    let server: SidecarServer
    let reloader: SnapshotReloader?
    let group: ServiceGroup
    let task: Task<Void, any Error>
    let logs: LogCapture

    var socketPath: String { configuration.socketPath }

    /// Starts a server on a fresh database of `workspace` (none: no database file at all),
    /// after letting `configure` adjust the configuration. Returns once it listens.
    static func start(
        workspace: Workspace? = sampleWorkspace(),
        directory: TestDirectory? = nil,
        logLevel: Logger.Level = .info,
        reloading: Reloading? = nil,
        configure: (inout ServerConfiguration) -> Void = { _ in }
    ) async throws -> RunningServer {
        let directory = try directory ?? TestDirectory()
        var configuration = ServerConfiguration(
            socketPath: directory.file("authz.sock"), databasePath: directory.file("authz.db"))
        configuration.shutdownGracePeriod = .seconds(3)
        configuration.transport = testTransport
        configure(&configuration)
        try configuration.validate()
        if let workspace { try makeDatabase(configuration.databasePath, workspace) }
        let snapshots = SnapshotHolder()
        snapshots.load(databasePath: configuration.databasePath)
        return try await start(
            configuration: configuration, snapshots: snapshots, directory: directory, logLevel: logLevel,
            reloading: reloading)
    }

    /// How a test server reloads: a `SnapshotReloader` (with the configuration's watch and
    /// poll settings) with an optional fault-injecting loader and Reload policy.
    struct Reloading {
        var loader: SnapshotReloader.Loader? = nil
        var retryBackoff: (initial: Duration, max: Duration) = (.milliseconds(20), .milliseconds(200))
        var reloadAllowed: @Sendable (UInt32) -> Bool = SidecarServer.defaultReloadPolicy
    }

    static func start(
        configuration: ServerConfiguration, snapshots: SnapshotHolder, directory: TestDirectory,
        logLevel: Logger.Level = .info, reloading: Reloading? = nil
    ) async throws -> RunningServer {
        let logs = LogCapture()
        let logger = logs.logger(level: logLevel)
        let eventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let reloader = reloading.map { reloading in
            if let loader = reloading.loader {
                SnapshotReloader(
                    configuration: configuration, snapshots: snapshots, logger: logger,
                    retryBackoff: reloading.retryBackoff, loader: loader)
            } else {
                SnapshotReloader(
                    configuration: configuration, snapshots: snapshots, logger: logger,
                    retryBackoff: reloading.retryBackoff)
            }
        }
        let server = SidecarServer(
            configuration: configuration, snapshots: snapshots, reloader: reloader, eventLoopGroup: eventLoopGroup,
            logger: logger, reloadAllowed: reloading?.reloadAllowed ?? SidecarServer.defaultReloadPolicy)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: server)]
        if let reloader { services.insert(.init(service: reloader), at: 0) }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: services, logger: logs.logger(level: .error)))
        let task = Task { try await group.run() }
        do {
            try await withTimeout(.seconds(10), "server start") {
                try await server.waitUntilListening()
                try await reloader?.waitUntilRunning()
            }
        } catch {
            task.cancel()
            _ = await task.result
            try? await eventLoopGroup.shutdownGracefully()
            throw error
        }
        return RunningServer(
            directory: directory, eventLoopGroup: eventLoopGroup, configuration: configuration, snapshots: snapshots,
            server: server, reloader: reloader, group: group, task: task, logs: logs)
    }

    private init(
        directory: TestDirectory, eventLoopGroup: MultiThreadedEventLoopGroup, configuration: ServerConfiguration,
        snapshots: SnapshotHolder, server: SidecarServer, reloader: SnapshotReloader?, group: ServiceGroup,
        task: Task<Void, any Error>, logs: LogCapture
    ) {
        self.directory = directory
        self.eventLoopGroup = eventLoopGroup
        self.configuration = configuration
        self.snapshots = snapshots
        self.server = server
        self.reloader = reloader
        self.group = group
        self.task = task
        self.logs = logs
    }

    func client(callTimeout: Duration = .seconds(10)) async throws -> SidecarClient {
        try await SidecarClient.connect(
            socketPath: socketPath, configuration: SidecarClient.Configuration(callTimeout: callTimeout),
            eventLoopGroup: eventLoopGroup)
    }

    /// Triggers graceful shutdown and waits (bounded) for run() to return; then stops the
    /// event loop (closing any client connection a test left open).
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await waitForExit()
    }

    /// Waits (bounded) for run() to return, then stops the event loop.
    func waitForExit() async throws {
        let task = self.task
        let result = try await withTimeout(.seconds(15), "server shutdown") { await task.result }
        try await eventLoopGroup.shutdownGracefully()
        try result.get()
    }
}

/// Runs `body` with a started server, always stopping it afterwards.
func withServer(
    workspace: Workspace? = sampleWorkspace(),
    logLevel: Logger.Level = .info,
    reloading: RunningServer.Reloading? = nil,
    configure: (inout ServerConfiguration) -> Void = { _ in },
    _ body: (RunningServer) async throws -> Void
) async throws {
    let server = try await RunningServer.start(
        workspace: workspace, logLevel: logLevel, reloading: reloading, configure: configure)
    do {
        try await body(server)
    } catch {
        try? await server.stop()
        throw error
    }
    try await server.stop()
}

// MARK: - Raw sockets

/// A plain blocking Unix-socket connection for sending arbitrary bytes and reading frames
/// with timeouts.
final class RawConnection {
    let fd: Int32
    private var received: [UInt8] = []

    init(path: String) throws {
        #if canImport(Glibc)
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw TestFailure("socket(): errno \(errno)") }
        let result = withUnixAddress(path) { connect(fd, $0, $1) }
        guard result == 0 else {
            let code = errno
            close(fd)
            throw TestFailure("connect(\(path)): errno \(code)")
        }
    }

    private var closed = false

    deinit { closeSocket() }

    /// Closes the socket, once: after that the descriptor number may belong to someone else,
    /// so closing it again could close another test's socket.
    func closeSocket() {
        guard !closed else { return }
        closed = true
        close(fd)
    }

    /// Writes every byte (blocking).
    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw TestFailure("write: errno \(errno)")
            }
            offset += written
        }
    }

    func send(_ request: WireRequest) throws {
        var bytes: [UInt8] = []
        request.append(to: &bytes)
        try send(bytes)
    }

    func setNonBlocking() {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// A non-blocking write: bytes written, or 0 when the socket would block.
    func tryWrite(_ bytes: [UInt8]) throws -> Int {
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, bytes.count) }
        if written < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { return 0 }
            throw TestFailure("write: errno \(errno)")
        }
        return written
    }

    /// Bytes sent that the peer has not read yet (Linux: SIOCOUTQ on a Unix socket); nil
    /// where the query is not available.
    var unreadByPeer: Int? {
        #if os(Linux)
        var count: Int32 = 0
        guard ioctl(fd, UInt(TIOCOUTQ), &count) == 0 else { return nil }
        return Int(count)
        #else
        return nil
        #endif
    }

    /// Half-closes the sending side (the server sees end of input).
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads more bytes before `deadline`; false on end of stream. Polls without blocking
    /// (sleeping between polls), so a waiting test never holds a cooperative thread.
    private func fill(deadline: ContinuousClock.Instant) async throws -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            guard ContinuousClock.now < deadline else { throw TestFailure("no data from the server in time") }
            let ready = poll(&poller, 1, 0)
            if ready < 0 {
                if errno == EINTR { continue }
                throw TestFailure("poll: errno \(errno)")
            }
            if ready == 0 {
                try await Task.sleep(for: .milliseconds(1))
                continue
            }
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                if errno == ECONNRESET { return false }
                throw TestFailure("read: errno \(errno)")
            }
            if count == 0 { return false }
            received.append(contentsOf: chunk[0..<count])
            return true
        }
    }

    /// The next response, or nil when the server closed the connection first.
    func readResponse(timeout: Duration = .seconds(5)) async throws -> WireResponse? {
        let deadline = ContinuousClock.now + timeout
        let parser = FrameParser(maxPayloadLength: 16 << 20)
        while true {
            let parsed = received.withUnsafeBytes { parser.parse($0) }
            switch parsed {
            case .frame(let frame):
                let response = try received.withUnsafeBytes { bytes in
                    try WireResponse(decoding: UnsafeRawBufferPointer(rebasing: bytes[frame.payload]))
                }
                received.removeFirst(frame.length)
                return response
            case .error(let error):
                throw TestFailure("bad frame from the server: \(error)")
            case .needMoreData:
                guard try await fill(deadline: deadline) else {
                    guard received.isEmpty else { throw TestFailure("connection closed in the middle of a frame") }
                    return nil
                }
            }
        }
    }

    /// Whether the server closes the connection (end of stream) within `timeout`, with
    /// nothing else to read before.
    func readsEndOfStream(timeout: Duration = .seconds(5)) async throws -> Bool {
        try await readResponse(timeout: timeout) == nil
    }
}

/// Waits until the server has read everything sent on `connection` (so it sits in the
/// server's frame decoder, not in the kernel).
func waitUntilServerRead(_ connection: RawConnection) async throws {
    guard connection.unreadByPeer != nil else {
        try await Task.sleep(for: .milliseconds(200))
        return
    }
    try await eventually(.seconds(5), "the server reads the bytes sent") { connection.unreadByPeer == 0 }
}

/// Raises the soft open-files limit to the hard limit (for the many-connections test).
func raiseOpenFileLimit(to wanted: UInt64) {
    var limit = rlimit()
    #if canImport(Glibc)
    let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    let resource = RLIMIT_NOFILE
    #endif
    guard getrlimit(resource, &limit) == 0 else { return }
    if UInt64(limit.rlim_cur) < wanted {
        limit.rlim_cur = min(limit.rlim_max, rlim_t(wanted))
        _ = setrlimit(resource, &limit)
    }
}

extension WireResponse {
    /// The single check result of an OK response.
    var checkResult: CheckResult? {
        guard status.code == .ok, case .check(let result) = answer else { return nil }
        return result
    }
}

/// Calls `body` with a `sockaddr_un` for `path` (as `bind`/`connect` take it).
func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
}

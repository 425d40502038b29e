// authzd: the authorization sidecar daemon. Loads the workspace snapshot from the
// database (read-only), serves the wire protocol on a Unix domain socket, and shuts down
// gracefully on SIGTERM or SIGINT.

import ArgumentParser
import AuthzServer
import CoreMetrics
import Logging
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct Authzd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "authzd",
        abstract: "Serve authorization decisions on a Unix domain socket.",
        discussion: """
            Every option can also be set with an environment variable, named after the flag: \
            AUTHZD_SOCKET, AUTHZD_SOCKET_MODE, AUTHZD_SOCKET_GROUP, AUTHZD_DB, AUTHZD_REQUIRE_DATABASE, \
            AUTHZD_MAX_FRAME_SIZE, AUTHZD_MAX_BATCH_SIZE, AUTHZD_MAX_CONNECTIONS, AUTHZD_IDLE_TIMEOUT, \
            AUTHZD_SHUTDOWN_GRACE_PERIOD, AUTHZD_TRANSPORT, AUTHZD_EVENT_LOOPS, AUTHZD_WATCH, AUTHZD_POLL_INTERVAL, AUTHZD_RELOAD_DEBOUNCE, AUTHZD_RELOAD_MODE, \
            AUTHZD_MAX_STALENESS, AUTHZD_DEFAULT_DEADLINE, AUTHZD_LOG_LEVEL, AUTHZD_LOG_FORMAT, \
            AUTHZD_METRICS_LISTEN. A flag \
            wins over its variable. Durations take a unit: 500ms, 10s (the default unit), 5m, 1h.

            Hot reload: the database's directory (and that of every symlink on its path) is \
            watched (inotify) and the snapshot version polled every --poll-interval; a change is \
            loaded off the request path and swapped in atomically: with --reload-mode delta (the \
            default) only the rows logged as changed since the snapshot in service are read and \
            applied to it; the first load, a replaced file, a gap in the change log, a settings \
            change, an added or removed entity or more than 10000 changes load everything, as \
            --reload-mode full always does. SIGHUP, or `authzctl reload \
            --socket PATH` (the Reload call, allowed to this daemon's Unix user and root), forces \
            a full reload; requests arriving while one is queued or running share the next load. A \
            failed load keeps the last good snapshot, is logged once, shown by Status and retried \
            with backoff.

            A stale socket file left by a crashed run is replaced; a socket another process \
            still serves on, or a path that is not a socket, is an error. SIGTERM and SIGINT \
            stop accepting, let open connections finish (up to the grace period), remove the \
            socket file and exit 0.
            """
    )

    @Option(help: ArgumentHelp("Unix domain socket path to listen on.", valueName: "path"))
    var socket: String?

    @Option(help: ArgumentHelp("Socket file permissions, octal (default 0660).", valueName: "mode"))
    var socketMode: String?

    @Option(help: ArgumentHelp("Group to give the socket file: a name or a numeric gid.", valueName: "group"))
    var socketGroup: String?

    @Option(help: ArgumentHelp("The workspace database (SQLite), opened read-only.", valueName: "path"))
    var db: String?

    @Flag(
        inversion: .prefixedNo,
        help: "Exit non-zero when the database cannot be loaded at start (default: serve UNAVAILABLE for checks).")
    var requireDatabase: Bool?

    @Option(help: ArgumentHelp("Largest request payload in bytes (default 65536).", valueName: "bytes"))
    var maxFrameSize: String?

    @Option(help: ArgumentHelp("Most checks in one Batch request (default 256).", valueName: "count"))
    var maxBatchSize: String?

    @Option(help: ArgumentHelp("Connections served at once (default 1024).", valueName: "count"))
    var maxConnections: String?

    @Option(help: ArgumentHelp("Close a connection on which nothing moves either way for this long, with no answer owed; 0 = never (default 300s).", valueName: "duration"))
    var idleTimeout: String?

    @Option(help: ArgumentHelp("Close a connection that takes longer than this to send one frame once it began; 0 = never (default 5s).", valueName: "duration"))
    var frameTimeout: String?

    @Option(help: ArgumentHelp("How long shutdown waits for open connections (default 10s).", valueName: "duration"))
    var shutdownGracePeriod: String?

    @Option(help: ArgumentHelp("epoll (default) or nio: how connections are served.", valueName: "transport"))
    var transport: String?

    @Option(help: ArgumentHelp("Threads serving connections (default: one per CPU).", valueName: "count"))
    var eventLoops: String?

    @Flag(
        inversion: .prefixedNo,
        help: "Watch the database's directory with inotify and reload on changes (default: on).")
    var watch: Bool?

    @Option(help: ArgumentHelp("Check the snapshot version this often; 0 = never (default 1s).", valueName: "duration"))
    var pollInterval: String?

    @Option(help: ArgumentHelp("Wait this long after a file event before checking (default 5ms).", valueName: "duration"))
    var reloadDebounce: String?

    @Option(
        help: ArgumentHelp(
            "delta: apply the logged changes to the snapshot in service when possible; full: always load everything (default delta).",
            valueName: "mode"))
    var reloadMode: String?

    @Option(
        help: ArgumentHelp(
            "Answer checks UNAVAILABLE once reloads have been failing this long (fail closed); 0 = never (default).",
            valueName: "duration"))
    var maxStaleness: String?

    @Option(
        help: ArgumentHelp(
            "How long a request with min_snapshot_version and no deadline_ms waits for it (default 1s).",
            valueName: "duration"))
    var defaultDeadline: String?

    @Option(help: ArgumentHelp("trace, debug, info (default), notice, warning, error or critical.", valueName: "level"))
    var logLevel: String?

    @Option(help: ArgumentHelp("text (default) or json, one line per event on stderr.", valueName: "format"))
    var logFormat: String?

    @Option(
        help: ArgumentHelp(
            "Serve /metrics (Prometheus), /healthz and /readyz over HTTP here: HOST:PORT (127.0.0.1:9464) or a Unix socket path starting with / or ./ (default: off).",
            valueName: "address"))
    var metricsListen: String?

    @Option(
        help: ArgumentHelp(
            "Write every decision answered as JSON Lines to this file (rotated by size), or - for standard output (default: off).",
            valueName: "path"))
    var decisionLog: String?

    @Option(help: ArgumentHelp("Record this fraction of decisions, 0 to 1 (default: 1).", valueName: "rate"))
    var decisionLogSample: String?

    @Flag(inversion: .prefixedNo, help: "Record only denials: a no, an answer of none, or an error (default: all).")
    var decisionLogDenialsOnly: Bool?

    @Option(
        help: ArgumentHelp(
            "Record only these methods: can_use, effective_permission, seat_type, capabilities, list_projects, list_project_access, list_assets (default: all).",
            valueName: "list"))
    var decisionLogMethods: String?

    @Option(help: ArgumentHelp("Rotate the decision log at this many bytes; 0: never (default: 104857600).", valueName: "bytes"))
    var decisionLogMaxSize: String?

    @Option(help: ArgumentHelp("Rotated decision log files kept, PATH.1 … PATH.N (default: 5).", valueName: "count"))
    var decisionLogKeep: String?

    @Option(
        help: ArgumentHelp(
            "Decisions buffered per event loop; when full, new ones are dropped and counted (default: 16384).",
            valueName: "count"))
    var decisionLogBuffer: String?

    func run() async throws {
        // Before anything slow (the initial load can take seconds): a write to a closed
        // pipe (stderr) must be an error, not SIGPIPE, and a SIGHUP must not take its
        // default action (terminate) before its handler runs. The sequence traps SIGHUP
        // now and keeps what arrives until ReloadOnSignal reads it.
        signal(SIGPIPE, SIG_IGN)
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let settings: DaemonSettings
        do {
            settings = try DaemonSettings.resolve(flags: flags, environment: Self.environment())
        } catch {
            for problem in error.problems { printError("authzd: \(problem)") }
            throw ExitCode.validationFailure
        }
        let format = settings.logFormat
        let level = settings.logLevel.level
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, format: format, level: level) }
        let logger = Logger(label: "authzd")
        let server = settings.server

        let snapshots = SnapshotHolder()
        logger.debug("loading the workspace snapshot", metadata: ["db": "\(server.databasePath)"])
        switch snapshots.load(databasePath: server.databasePath) {
        case .success(let snapshot):
            logger.info(
                "loaded workspace snapshot",
                metadata: [
                    "db": "\(server.databasePath)", "snapshot-version": "\(snapshot.version)",
                    "users": "\(snapshot.userCount)", "groups": "\(snapshot.groupCount)",
                    "assets": "\(snapshot.assetCount)", "projects": "\(snapshot.projectCount)",
                    "grants": "\(snapshot.grantCount)", "warnings": "\(snapshot.warnings.count)",
                ])
        case .failure(let error):
            if server.requireDatabase {
                logger.critical(
                    "cannot load the workspace database and --require-database is set: \(error)",
                    metadata: ["db": "\(server.databasePath)"])
                throw ExitCode.failure
            }
            logger.warning(
                "cannot load the workspace database; checks answer UNAVAILABLE until a snapshot is loaded: \(error)",
                metadata: ["db": "\(server.databasePath)"])
        }

        let reloader = SnapshotReloader(configuration: server, snapshots: snapshots, logger: logger)
        let service = SidecarServer(configuration: server, snapshots: snapshots, reloader: reloader, logger: logger)
        // Whatever is recorded through swift-metrics in this process is served by /metrics.
        if let factory = service.metricsFactory { MetricsSystem.bootstrap(factory) }
        // Shut down in reverse order: the server drains first, then the reloader stops.
        var configuration = ServiceGroupConfiguration(
            services: [
                .init(service: reloader),
                .init(service: ReloadOnSignal(reloader: reloader, signals: hangups, logger: logger)),
                .init(service: service),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // A backstop: the server bounds its own drain by the grace period.
        configuration.maximumGracefulShutdownDuration = server.shutdownGracePeriod + .seconds(5)
        do {
            try await ServiceGroup(configuration: configuration).run()
        } catch {
            logger.critical("authzd stopped: \(error)")
            throw ExitCode.failure
        }
    }

    /// The flags given on the command line, as text.
    private var flags: [DaemonSettings.Key: String] {
        var flags: [DaemonSettings.Key: String] = [:]
        flags[.socket] = socket
        flags[.socketMode] = socketMode
        flags[.socketGroup] = socketGroup
        flags[.db] = db
        flags[.requireDatabase] = requireDatabase.map { $0 ? "true" : "false" }
        flags[.maxFrameSize] = maxFrameSize
        flags[.maxBatchSize] = maxBatchSize
        flags[.maxConnections] = maxConnections
        flags[.idleTimeout] = idleTimeout
        flags[.frameTimeout] = frameTimeout
        flags[.shutdownGracePeriod] = shutdownGracePeriod
        flags[.transport] = transport
        flags[.eventLoops] = eventLoops
        flags[.watch] = watch.map { $0 ? "true" : "false" }
        flags[.pollInterval] = pollInterval
        flags[.reloadDebounce] = reloadDebounce
        flags[.reloadMode] = reloadMode
        flags[.maxStaleness] = maxStaleness
        flags[.defaultDeadline] = defaultDeadline
        flags[.logLevel] = logLevel
        flags[.logFormat] = logFormat
        flags[.metricsListen] = metricsListen
        flags[.decisionLog] = decisionLog
        flags[.decisionLogSample] = decisionLogSample
        flags[.decisionLogDenialsOnly] = decisionLogDenialsOnly.map { $0 ? "true" : "false" }
        flags[.decisionLogMethods] = decisionLogMethods
        flags[.decisionLogMaxSize] = decisionLogMaxSize
        flags[.decisionLogKeep] = decisionLogKeep
        flags[.decisionLogBuffer] = decisionLogBuffer
        return flags
    }

    /// The AUTHZD_* variables that are set.
    private static func environment() -> [String: String] {
        var environment: [String: String] = [:]
        for key in DaemonSettings.Key.allCases {
            if let value = getenv(key.environmentVariable) {
                environment[key.environmentVariable] = String(cString: value)
            }
        }
        return environment
    }
}

/// SIGHUP forces a reload (like `authzctl reload`). It does not wait for the load: SIGHUPs
/// arriving while one is queued or running collapse into one more load (the reloader logs
/// its outcome), so a burst of signals costs a load or two, not one each.
struct ReloadOnSignal: Service {
    let reloader: SnapshotReloader
    let signals: UnixSignalsSequence
    let logger: Logger

    func run() async throws {
        for await _ in signals.cancelOnGracefulShutdown() {
            if reloader.requestReload() {
                logger.info("SIGHUP: reloading the workspace snapshot")
            } else {
                logger.debug("SIGHUP: a reload is already queued")
            }
        }
    }
}

private func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}

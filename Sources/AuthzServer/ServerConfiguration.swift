// The server's configuration, and how authzd builds it from command-line flags and
// AUTHZD_* environment variables (a flag wins over its variable, which wins over the
// default). Parsing lives here, not in the executable, so it is tested like the rest.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Everything `SidecarServer` needs to know, with production defaults.
public struct ServerConfiguration: Sendable, Equatable {
    /// The Unix domain socket path to listen on.
    public var socketPath: String
    /// Permission bits applied to the socket file after bind (connecting needs write).
    public var socketMode: UInt32
    /// The group the socket file is given after bind; nil keeps the process's group.
    public var socketGroup: SocketGroup?
    /// The workspace database the snapshot is loaded from (read-only).
    public var databasePath: String
    /// Exit at start when the database cannot be loaded, instead of serving UNAVAILABLE.
    public var requireDatabase: Bool
    /// The largest request payload accepted, in bytes (the frame header excluded).
    public var maxFrameSize: Int
    /// The most checks one Batch request may carry.
    public var maxBatchSize: Int
    /// Connections served at once; the next one is answered RESOURCE_EXHAUSTED and closed.
    public var maxConnections: Int
    /// A connection that sends nothing for this long is closed; nil: never.
    public var idleTimeout: Duration?
    /// A frame must be received whole this long after its first byte arrived (slow senders
    /// cannot hold a connection); nil = no limit.
    public var frameTimeout: Duration?
    /// How long a graceful shutdown waits for connections to finish before closing them.
    public var shutdownGracePeriod: Duration
    /// Outbound bytes queued per connection above which the server stops reading from it
    /// until they drain below `writeBufferLowWaterMark`.
    public var writeBufferHighWaterMark: Int
    public var writeBufferLowWaterMark: Int
    /// The listen(2) backlog (the kernel caps it at net.core.somaxconn).
    public var listenBacklog: Int
    /// How connections are served.
    public var transport: Transport
    /// Event loops (threads) serving connections with the epoll transport.
    public var eventLoops: Int
    /// Watch the database's directory with inotify and reload on changes.
    public var watchDatabase: Bool
    /// Check the snapshot version this often (a fallback for file systems where the watch
    /// is silent); nil = never.
    public var pollInterval: Duration?
    /// After the first file event of a burst, wait this long before checking (coalesces
    /// the events of one commit, and commits in quick succession).
    public var reloadDebounce: Duration
    /// How a changed database is loaded: `delta` (the default) applies the logged changes to
    /// the snapshot in service when it can and loads everything otherwise; `full` always
    /// loads everything.
    public var reloadMode: ReloadMode
    /// A delta reload applies at most this many logged row changes; more load everything.
    public var deltaMaxChanges: Int
    /// When loads have been failing for longer than this while an older snapshot is in
    /// service, checks answer UNAVAILABLE instead (fail closed); nil = serve the last good
    /// snapshot indefinitely.
    public var maxStaleness: Duration?
    /// How long a request with `min_snapshot_version` but no `deadline_ms` may wait for a
    /// newer snapshot.
    public var defaultDeadline: Duration
    /// Where to serve the metrics and health endpoints over HTTP (`/metrics`, `/healthz`,
    /// `/readyz`); nil = nowhere, and the request path keeps no metrics.
    public var metricsListen: MetricsAddress?
    /// The decision log (JSON Lines of the decisions answered); nil: off.
    public var decisionLog: DecisionLogConfiguration?

    public static let defaultSocketMode: UInt32 = 0o660
    public static let defaultMaxFrameSize = 64 * 1024
    public static let defaultMaxBatchSize = 256
    public static let defaultMaxConnections = 1024
    public static let defaultIdleTimeout: Duration = .seconds(300)
    public static let defaultFrameTimeout: Duration = .seconds(5)
    public static let defaultShutdownGracePeriod: Duration = .seconds(10)
    /// One event loop per online CPU.
    public static let defaultEventLoops = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    public static let defaultPollInterval: Duration = .seconds(1)
    public static let defaultReloadDebounce: Duration = .milliseconds(5)
    /// The most logged row changes a delta reload applies (more load everything).
    public static let defaultDeltaMaxChanges = 10_000
    public static let defaultDeadline: Duration = .seconds(1)
    /// No request waits longer than this for a newer snapshot, whatever its `deadline_ms`.
    public static let maxDeadline: Duration = .seconds(60)

    public init(
        socketPath: String,
        databasePath: String,
        socketMode: UInt32 = ServerConfiguration.defaultSocketMode,
        socketGroup: SocketGroup? = nil,
        requireDatabase: Bool = false,
        maxFrameSize: Int = ServerConfiguration.defaultMaxFrameSize,
        maxBatchSize: Int = ServerConfiguration.defaultMaxBatchSize,
        maxConnections: Int = ServerConfiguration.defaultMaxConnections,
        idleTimeout: Duration? = ServerConfiguration.defaultIdleTimeout,
        frameTimeout: Duration? = ServerConfiguration.defaultFrameTimeout,
        shutdownGracePeriod: Duration = ServerConfiguration.defaultShutdownGracePeriod,
        writeBufferHighWaterMark: Int = 64 * 1024,
        writeBufferLowWaterMark: Int = 32 * 1024,
        listenBacklog: Int = 4096,
        transport: Transport = .epoll,
        eventLoops: Int = ServerConfiguration.defaultEventLoops,
        watchDatabase: Bool = true,
        pollInterval: Duration? = ServerConfiguration.defaultPollInterval,
        reloadDebounce: Duration = ServerConfiguration.defaultReloadDebounce,
        reloadMode: ReloadMode = .delta,
        deltaMaxChanges: Int = ServerConfiguration.defaultDeltaMaxChanges,
        maxStaleness: Duration? = nil,
        defaultDeadline: Duration = ServerConfiguration.defaultDeadline,
        metricsListen: MetricsAddress? = nil,
        decisionLog: DecisionLogConfiguration? = nil
    ) {
        self.socketPath = socketPath
        self.databasePath = databasePath
        self.socketMode = socketMode
        self.socketGroup = socketGroup
        self.requireDatabase = requireDatabase
        self.maxFrameSize = maxFrameSize
        self.maxBatchSize = maxBatchSize
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.frameTimeout = frameTimeout
        self.shutdownGracePeriod = shutdownGracePeriod
        self.writeBufferHighWaterMark = writeBufferHighWaterMark
        self.writeBufferLowWaterMark = writeBufferLowWaterMark
        self.listenBacklog = listenBacklog
        self.transport = transport
        self.eventLoops = eventLoops
        self.watchDatabase = watchDatabase
        self.pollInterval = pollInterval
        self.reloadDebounce = reloadDebounce
        self.reloadMode = reloadMode
        self.deltaMaxChanges = deltaMaxChanges
        self.maxStaleness = maxStaleness
        self.defaultDeadline = defaultDeadline
        self.metricsListen = metricsListen
        self.decisionLog = decisionLog
    }

    /// Throws every problem with the values as one error; returns when the configuration is usable.
    public func validate() throws(ConfigurationError) {
        var problems: [String] = []
        if socketPath.isEmpty { problems.append("the socket path is empty") }
        if socketPath.utf8.count > SocketFile.maxPathLength {
            problems.append(
                "the socket path is \(socketPath.utf8.count) bytes; Unix domain socket paths are limited to \(SocketFile.maxPathLength)")
        }
        if socketMode > 0o7777 { problems.append("socket mode \(String(socketMode, radix: 8)) is not a permission mode") }
        if databasePath.isEmpty { problems.append("the database path is empty") }
        if maxFrameSize < 16 || maxFrameSize > 64 * 1024 * 1024 {
            problems.append("max frame size \(maxFrameSize) is outside 16...\(64 * 1024 * 1024)")
        }
        if maxBatchSize < 1 { problems.append("max batch size \(maxBatchSize) must be at least 1") }
        if maxConnections < 1 { problems.append("max connections \(maxConnections) must be at least 1") }
        if let idleTimeout, idleTimeout <= .zero { problems.append("the idle timeout must be positive (or none)") }
        if let frameTimeout, frameTimeout <= .zero { problems.append("the frame timeout must be positive (or none)") }
        if shutdownGracePeriod < .zero { problems.append("the shutdown grace period is negative") }
        if writeBufferLowWaterMark < 0 || writeBufferHighWaterMark < writeBufferLowWaterMark {
            problems.append("write buffer water marks must satisfy 0 <= low <= high")
        }
        if listenBacklog < 1 { problems.append("the listen backlog must be at least 1") }
        if eventLoops < 1 || eventLoops > 256 { problems.append("event loops \(eventLoops) is outside 1...256") }
        if let pollInterval, pollInterval < .milliseconds(10) {
            problems.append("the poll interval must be at least 10ms (or 0 for no polling)")
        }
        if reloadDebounce < .zero || reloadDebounce > .seconds(10) {
            problems.append("the reload debounce must be between 0 and 10s")
        }
        if deltaMaxChanges < 0 { problems.append("the delta reload's change limit must not be negative") }
        if let maxStaleness, maxStaleness <= .zero { problems.append("the max staleness must be positive (or none)") }
        if defaultDeadline < .zero || defaultDeadline > Self.maxDeadline {
            problems.append("the default deadline must be between 0 and \(Self.maxDeadline)")
        }
        if case .unix(let path) = metricsListen {
            if path.utf8.count > SocketFile.maxPathLength {
                problems.append(
                    "the metrics socket path is \(path.utf8.count) bytes; Unix domain socket paths are limited to \(SocketFile.maxPathLength)")
            }
            if path == socketPath { problems.append("the metrics socket path is the request socket's path") }
        }
        if let decisionLog { problems += decisionLog.problems.map { "the decision log: \($0)" } }
        if !problems.isEmpty { throw ConfigurationError(problems) }
    }
}

/// Where the metrics endpoint listens: a TCP host and port, or a Unix domain socket path.
public enum MetricsAddress: Sendable, Hashable, CustomStringConvertible {
    /// A host (an IPv4 or IPv6 address, or a name) and a port (0: any free port).
    case tcp(host: String, port: Int)
    /// A Unix domain socket path.
    case unix(String)

    /// `HOST:PORT` (`127.0.0.1:9464`, `[::1]:9464`, `localhost:9464`), or a path starting
    /// with `/` or `./` (a Unix domain socket). Nil for anything else.
    public init?(parsing text: String) {
        if text.hasPrefix("/") || text.hasPrefix("./") {
            guard text.count > 2 || text.hasPrefix("/"), !text.hasSuffix("/") else { return nil }
            self = .unix(text)
            return
        }
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = Substring(text[..<colon])
        let portText = text[text.index(after: colon)...]
        guard !portText.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }), portText.count <= 5,
            let port = Int(portText), port <= 65535
        else { return nil }
        if host.hasPrefix("[") {
            guard host.hasSuffix("]"), host.count > 2 else { return nil }
            host = host.dropFirst().dropLast()
            guard host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
        } else {
            guard !host.isEmpty,
                host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") })
            else { return nil }
        }
        self = .tcp(host: String(host), port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): path
        }
    }
}

/// How the reloader loads a changed database.
public enum ReloadMode: String, Sendable, Hashable, CaseIterable {
    /// Apply the changes logged since the snapshot in service to it (sharing every table they
    /// do not touch); load everything when the log cannot say (the first load, a replaced
    /// file, a gap in the log, too many changes, a settings or entity change).
    case delta
    /// Always load everything.
    case full
}

/// How the server serves connections.
public enum Transport: String, Sendable, Hashable, CaseIterable {
    /// One epoll loop per core, one read and one send per batch of requests (the default).
    case epoll
    /// SwiftNIO (a ServerBootstrap pipeline per connection).
    case nio
}

/// The group a socket file is given: by name (looked up at bind) or by numeric id.
public enum SocketGroup: Sendable, Hashable, CustomStringConvertible {
    case name(String)
    case id(UInt32)

    /// All digits: an id; anything else: a name.
    public init?(parsing text: String) {
        guard !text.isEmpty else { return nil }
        if text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            guard let id = UInt32(text) else { return nil }
            self = .id(id)
        } else {
            self = .name(text)
        }
    }

    public var description: String {
        switch self {
        case .name(let name): name
        case .id(let id): String(id)
        }
    }
}

/// Configuration that cannot be used; `problems` lists every reason.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var problems: [String]
    public init(_ problems: [String]) { self.problems = problems }
    public init(_ problem: String) { self.problems = [problem] }
    public var description: String { problems.joined(separator: "; ") }
}

// MARK: - Flags and environment

/// How log lines are written.
public enum LogFormat: String, Sendable, CaseIterable {
    case text
    case json
}

/// What authzd runs with: the server configuration and how it logs.
public struct DaemonSettings: Sendable, Equatable {
    public var server: ServerConfiguration
    public var logLevel: LogLevel
    public var logFormat: LogFormat

    /// swift-log's levels by name, without making every user of this type import Logging.
    public enum LogLevel: String, Sendable, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
    }

    /// One setting: its flag (without `--`) and its environment variable.
    public enum Key: String, Sendable, CaseIterable {
        case socket
        case socketMode = "socket-mode"
        case socketGroup = "socket-group"
        case db
        case requireDatabase = "require-database"
        case maxFrameSize = "max-frame-size"
        case maxBatchSize = "max-batch-size"
        case maxConnections = "max-connections"
        case idleTimeout = "idle-timeout"
        case frameTimeout = "frame-timeout"
        case shutdownGracePeriod = "shutdown-grace-period"
        case transport
        case eventLoops = "event-loops"
        case watch
        case pollInterval = "poll-interval"
        case reloadDebounce = "reload-debounce"
        case reloadMode = "reload-mode"
        case maxStaleness = "max-staleness"
        case defaultDeadline = "default-deadline"
        case logLevel = "log-level"
        case logFormat = "log-format"
        case metricsListen = "metrics-listen"
        case decisionLog = "decision-log"
        case decisionLogSample = "decision-log-sample"
        case decisionLogDenialsOnly = "decision-log-denials-only"
        case decisionLogMethods = "decision-log-methods"
        case decisionLogMaxSize = "decision-log-max-size"
        case decisionLogKeep = "decision-log-keep"
        case decisionLogBuffer = "decision-log-buffer"

        /// `AUTHZD_` and the flag in upper snake case, e.g. `AUTHZD_MAX_FRAME_SIZE`.
        public var environmentVariable: String {
            "AUTHZD_" + String(rawValue.map { $0 == "-" ? "_" : Character($0.uppercased()) })
        }

        public var flag: String { "--" + rawValue }
    }

    /// Resolves every setting: `flags[key]` (the text given on the command line) wins over
    /// `environment[key.environmentVariable]`, which wins over the default. An empty
    /// environment variable counts as unset. Every bad value is reported, naming where it
    /// came from.
    public static func resolve(
        flags: [Key: String], environment: [String: String]
    ) throws(ConfigurationError) -> DaemonSettings {
        var problems: [String] = []
        func raw(_ key: Key) -> (value: String, source: String)? {
            if let value = flags[key] { return (value, key.flag) }
            if let value = environment[key.environmentVariable], !value.isEmpty {
                return (value, key.environmentVariable)
            }
            return nil
        }
        func parse<T>(_ key: Key, _ what: String, _ parser: (String) -> T?) -> T? {
            guard let (value, source) = raw(key) else { return nil }
            guard let parsed = parser(value) else {
                problems.append("\(source): '\(value)' is not \(what)")
                return nil
            }
            return parsed
        }

        let socket = raw(.socket)?.value
        let db = raw(.db)?.value
        if socket == nil {
            problems.append("no socket path: pass \(Key.socket.flag) or set \(Key.socket.environmentVariable)")
        }
        if db == nil {
            problems.append("no database path: pass \(Key.db.flag) or set \(Key.db.environmentVariable)")
        }
        var server = ServerConfiguration(socketPath: socket ?? "", databasePath: db ?? "")
        if let mode = parse(.socketMode, "an octal permission mode such as 0660", Self.parseMode) {
            server.socketMode = mode
        }
        if let group = parse(.socketGroup, "a group name or numeric gid", SocketGroup.init(parsing:)) {
            server.socketGroup = group
        }
        if let require = parse(.requireDatabase, "a boolean (true/false, 1/0, yes/no)", Self.parseBool) {
            server.requireDatabase = require
        }
        if let size = parse(.maxFrameSize, "a byte count", Self.parseCount) { server.maxFrameSize = size }
        if let size = parse(.maxBatchSize, "a count", Self.parseCount) { server.maxBatchSize = size }
        if let count = parse(.maxConnections, "a count", Self.parseCount) { server.maxConnections = count }
        if let timeout = parse(.idleTimeout, "a duration such as 300, 300s, 5m or 500ms", Self.parseDuration) {
            server.idleTimeout = timeout == .zero ? nil : timeout
        }
        if let timeout = parse(.frameTimeout, "a duration such as 5, 5s or 500ms", Self.parseDuration) {
            server.frameTimeout = timeout == .zero ? nil : timeout
        }
        if let grace = parse(.shutdownGracePeriod, "a duration such as 10, 10s or 1500ms", Self.parseDuration) {
            server.shutdownGracePeriod = grace
        }
        if let transport = parse(.transport, "a transport (epoll, nio)", { Transport(rawValue: $0.lowercased()) }) {
            server.transport = transport
        }
        if let loops = parse(.eventLoops, "a count", Self.parseCount) { server.eventLoops = loops }
        if let watch = parse(.watch, "a boolean (true/false, 1/0, yes/no)", Self.parseBool) {
            server.watchDatabase = watch
        }
        if let interval = parse(.pollInterval, "a duration such as 1s, 500ms or 0 (off)", Self.parseDuration) {
            server.pollInterval = interval == .zero ? nil : interval
        }
        if let debounce = parse(.reloadDebounce, "a duration such as 5ms", Self.parseDuration) {
            server.reloadDebounce = debounce
        }
        if let mode = parse(.reloadMode, "a reload mode (delta, full)", { ReloadMode(rawValue: $0.lowercased()) }) {
            server.reloadMode = mode
        }
        if let staleness = parse(.maxStaleness, "a duration such as 30s, 5m or 0 (off)", Self.parseDuration) {
            server.maxStaleness = staleness == .zero ? nil : staleness
        }
        if let deadline = parse(.defaultDeadline, "a duration such as 1s or 250ms", Self.parseDuration) {
            server.defaultDeadline = deadline
        }
        if let address = parse(
            .metricsListen,
            "a metrics address: HOST:PORT (such as 127.0.0.1:9464 or [::1]:9464) or a Unix socket path starting with / or ./",
            MetricsAddress.init(parsing:))
        {
            server.metricsListen = address
        }
        if let destination = raw(.decisionLog)?.value {
            var log = DecisionLogConfiguration(destination: DecisionLogConfiguration.destination(destination))
            if let rate = parse(.decisionLogSample, "a sampling rate between 0 and 1 (such as 0.01)", { Double($0) }) {
                log.sampleRate = rate
            }
            if let denials = parse(.decisionLogDenialsOnly, "a boolean (true/false, 1/0, yes/no)", Self.parseBool) {
                log.denialsOnly = denials
            }
            if let (value, source) = raw(.decisionLogMethods) {
                do {
                    log.methods = try DecisionLogConfiguration.methods(value)
                } catch {
                    problems.append("\(source): \(error)")
                }
            }
            if let size = parse(.decisionLogMaxSize, "a byte count (0: never rotate)", Self.parseCount) {
                log.maxFileBytes = size == 0 ? nil : size
            }
            if let keep = parse(.decisionLogKeep, "a count", Self.parseCount) { log.keepFiles = keep }
            if let size = parse(.decisionLogBuffer, "a count of decisions", Self.parseCount) { log.bufferSize = size }
            server.decisionLog = log
        } else {
            for key in [Key.decisionLogSample, .decisionLogDenialsOnly, .decisionLogMethods, .decisionLogMaxSize, .decisionLogKeep, .decisionLogBuffer]
            where flags[key] != nil {
                problems.append("\(key.flag) needs \(Key.decisionLog.flag)")
            }
        }
        let levels = LogLevel.allCases.map(\.rawValue).joined(separator: ", ")
        let level = parse(.logLevel, "a log level (\(levels))") { LogLevel(rawValue: $0.lowercased()) } ?? .info
        let format = parse(.logFormat, "a log format (text, json)") { LogFormat(rawValue: $0.lowercased()) } ?? .text

        if problems.isEmpty {
            do {
                try server.validate()
            } catch {
                problems += error.problems
            }
        }
        guard problems.isEmpty else { throw ConfigurationError(problems) }
        return DaemonSettings(server: server, logLevel: level, logFormat: format)
    }

    /// An octal mode: `0660`, `660`, `0o660`; at most 0o7777.
    public static func parseMode(_ text: String) -> UInt32? {
        var digits = Substring(text)
        if digits.hasPrefix("0o") || digits.hasPrefix("0O") { digits = digits.dropFirst(2) }
        guard !digits.isEmpty, digits.count <= 5, let mode = UInt32(digits, radix: 8), mode <= 0o7777 else { return nil }
        return mode
    }

    /// A non-negative decimal count.
    public static func parseCount(_ text: String) -> Int? {
        guard let value = Int(text), value >= 0 else { return nil }
        return value
    }

    public static func parseBool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "1", "true", "yes", "on": true
        case "0", "false", "no", "off": false
        default: nil
        }
    }

    /// A duration: a number with an optional unit `ms`, `s` (the default), `m` or `h`.
    /// Fractions are allowed (`1.5s`); negative values are not.
    public static func parseDuration(_ text: String) -> Duration? {
        let units: [(suffix: String, milliseconds: Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        var number = Substring(text)
        var scale = 1000.0
        for unit in units where text.hasSuffix(unit.suffix) {
            number = text.dropLast(unit.suffix.count)
            scale = unit.milliseconds
            break
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
            let value = Double(number), value.isFinite, value >= 0, value * scale <= 1e12
        else { return nil }
        return .milliseconds(Int64((value * scale).rounded()))
    }
}

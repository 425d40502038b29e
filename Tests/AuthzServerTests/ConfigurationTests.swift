// authzd's settings: flags win over AUTHZD_* variables, which win over defaults; every
// bad value is reported with where it came from.

import AuthzServer
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    typealias Key = DaemonSettings.Key

    @Test func defaultsNeedOnlyTheSocketAndTheDatabase() throws {
        let settings = try DaemonSettings.resolve(flags: [.socket: "./authz.sock", .db: "./authz.db"], environment: [:])
        let server = settings.server
        #expect(server.socketPath == "./authz.sock")
        #expect(server.databasePath == "./authz.db")
        #expect(server.socketMode == 0o660)
        #expect(server.socketGroup == nil)
        #expect(!server.requireDatabase)
        #expect(server.maxFrameSize == 65536)
        #expect(server.maxBatchSize == 256)
        #expect(server.maxConnections == 1024)
        #expect(server.idleTimeout == .seconds(300))
        #expect(server.shutdownGracePeriod == .seconds(10))
        #expect(settings.logLevel == .info)
        #expect(settings.logFormat == .text)
    }

    @Test func environmentVariablesApplyAndFlagsWin() throws {
        let environment = [
            "AUTHZD_SOCKET": "/env/authz.sock", "AUTHZD_DB": "/env/authz.db", "AUTHZD_SOCKET_MODE": "0600",
            "AUTHZD_SOCKET_GROUP": "authz", "AUTHZD_REQUIRE_DATABASE": "true", "AUTHZD_MAX_FRAME_SIZE": "1024",
            "AUTHZD_MAX_BATCH_SIZE": "8", "AUTHZD_MAX_CONNECTIONS": "10", "AUTHZD_IDLE_TIMEOUT": "0",
            "AUTHZD_SHUTDOWN_GRACE_PERIOD": "1500ms", "AUTHZD_LOG_LEVEL": "debug", "AUTHZD_LOG_FORMAT": "json",
        ]
        let fromEnvironment = try DaemonSettings.resolve(flags: [:], environment: environment)
        #expect(fromEnvironment.server.socketPath == "/env/authz.sock")
        #expect(fromEnvironment.server.databasePath == "/env/authz.db")
        #expect(fromEnvironment.server.socketMode == 0o600)
        #expect(fromEnvironment.server.socketGroup == .name("authz"))
        #expect(fromEnvironment.server.requireDatabase)
        #expect(fromEnvironment.server.maxFrameSize == 1024)
        #expect(fromEnvironment.server.maxBatchSize == 8)
        #expect(fromEnvironment.server.maxConnections == 10)
        #expect(fromEnvironment.server.idleTimeout == nil, "0 = no idle timeout")
        #expect(fromEnvironment.server.shutdownGracePeriod == .milliseconds(1500))
        #expect(fromEnvironment.logLevel == .debug)
        #expect(fromEnvironment.logFormat == .json)

        let flags: [Key: String] = [
            .socket: "/flag/authz.sock", .socketMode: "640", .socketGroup: "1234", .requireDatabase: "false",
            .idleTimeout: "5m", .logFormat: "text",
        ]
        let both = try DaemonSettings.resolve(flags: flags, environment: environment)
        #expect(both.server.socketPath == "/flag/authz.sock")
        #expect(both.server.databasePath == "/env/authz.db", "no flag: the variable")
        #expect(both.server.socketMode == 0o640)
        #expect(both.server.socketGroup == .id(1234))
        #expect(!both.server.requireDatabase)
        #expect(both.server.idleTimeout == .seconds(300))
        #expect(both.logFormat == .text)
        #expect(both.logLevel == .debug)
    }

    @Test func reloadAndTransportSettingsHaveDefaultsFlagsAndVariables() throws {
        let defaults = try DaemonSettings.resolve(flags: [.socket: "s", .db: "d"], environment: [:]).server
        #expect(defaults.transport == .epoll)
        #expect(defaults.eventLoops == ServerConfiguration.defaultEventLoops)
        #expect(defaults.watchDatabase)
        #expect(defaults.pollInterval == .seconds(1))
        #expect(defaults.reloadDebounce == .milliseconds(5))
        #expect(defaults.maxStaleness == nil)
        #expect(defaults.defaultDeadline == .seconds(1))

        let environment = [
            "AUTHZD_TRANSPORT": "nio", "AUTHZD_EVENT_LOOPS": "3", "AUTHZD_WATCH": "false", "AUTHZD_POLL_INTERVAL": "0",
            "AUTHZD_RELOAD_DEBOUNCE": "20ms", "AUTHZD_MAX_STALENESS": "5m", "AUTHZD_DEFAULT_DEADLINE": "250ms",
        ]
        let set = try DaemonSettings.resolve(flags: [.socket: "s", .db: "d"], environment: environment).server
        #expect(set.transport == .nio)
        #expect(set.eventLoops == 3)
        #expect(!set.watchDatabase)
        #expect(set.pollInterval == nil, "0 turns polling off")
        #expect(set.reloadDebounce == .milliseconds(20))
        #expect(set.maxStaleness == .seconds(300))
        #expect(set.defaultDeadline == .milliseconds(250))

        let flagsWin = try DaemonSettings.resolve(
            flags: [.socket: "s", .db: "d", .transport: "epoll", .pollInterval: "2s", .maxStaleness: "0"],
            environment: environment
        ).server
        #expect(flagsWin.transport == .epoll)
        #expect(flagsWin.pollInterval == .seconds(2))
        #expect(flagsWin.maxStaleness == nil, "0 turns fail-closed off")

        #expect(defaults.reloadMode == .delta, "delta reloads are the default")
        #expect(defaults.deltaMaxChanges == ServerConfiguration.defaultDeltaMaxChanges)
        let full = try DaemonSettings.resolve(flags: [.socket: "s", .db: "d"], environment: ["AUTHZD_RELOAD_MODE": "full"]).server
        #expect(full.reloadMode == .full)
        let flagWins = try DaemonSettings.resolve(
            flags: [.socket: "s", .db: "d", .reloadMode: "Delta"], environment: ["AUTHZD_RELOAD_MODE": "full"]
        ).server
        #expect(flagWins.reloadMode == .delta)
        do {
            _ = try DaemonSettings.resolve(flags: [.socket: "s", .db: "d", .reloadMode: "partial"], environment: [:])
            Issue.record("an unknown reload mode was accepted")
        } catch {
            #expect(error.problems.joined(separator: "\n").contains("--reload-mode: 'partial' is not a reload mode"))
        }

        do {
            _ = try DaemonSettings.resolve(flags: [.socket: "s", .db: "d", .transport: "uring"], environment: [:])
            Issue.record("an unknown transport was accepted")
        } catch {
            #expect(error.problems.joined(separator: "\n").contains("--transport: 'uring'"))
        }
        // Values that parse but are out of range are reported together by validate().
        do {
            _ = try DaemonSettings.resolve(
                flags: [.socket: "s", .db: "d", .pollInterval: "1ms", .defaultDeadline: "2m", .eventLoops: "0"],
                environment: [:])
            Issue.record("out-of-range settings accepted")
        } catch {
            let text = error.problems.joined(separator: "\n")
            #expect(text.contains("poll interval must be at least 10ms"))
            #expect(text.contains("default deadline"))
            #expect(text.contains("event loops 0"))
        }
    }

    @Test func everyBadValueIsReportedWithItsSource() {
        let flags: [Key: String] = [.socketMode: "0999", .maxFrameSize: "-1", .logLevel: "loud"]
        let environment = ["AUTHZD_IDLE_TIMEOUT": "soon", "AUTHZD_LOG_FORMAT": "xml", "AUTHZD_MAX_CONNECTIONS": "0"]
        do {
            _ = try DaemonSettings.resolve(flags: flags, environment: environment)
            Issue.record("bad settings accepted")
        } catch {
            let text = error.problems.joined(separator: "\n")
            #expect(text.contains("--socket-mode: '0999'"))
            #expect(text.contains("--max-frame-size: '-1'"))
            #expect(text.contains("--log-level: 'loud'"))
            #expect(text.contains("AUTHZD_IDLE_TIMEOUT: 'soon'"))
            #expect(text.contains("AUTHZD_LOG_FORMAT: 'xml'"))
            #expect(text.contains("no socket path"))
            #expect(text.contains("no database path"))
        }
        // Values that parse but make no sense are caught by validation.
        #expect(throws: ConfigurationError.self) {
            try DaemonSettings.resolve(
                flags: [.socket: "s", .db: "d", .maxConnections: "0"], environment: [:])
        }
        #expect(throws: ConfigurationError.self) {
            try DaemonSettings.resolve(
                flags: [.socket: "/" + String(repeating: "a", count: 200), .db: "d"], environment: [:])
        }
    }

    @Test func durationsModesAndGroupsParse() {
        #expect(DaemonSettings.parseDuration("300") == .seconds(300))
        #expect(DaemonSettings.parseDuration("1.5s") == .milliseconds(1500))
        #expect(DaemonSettings.parseDuration("250ms") == .milliseconds(250))
        #expect(DaemonSettings.parseDuration("2m") == .seconds(120))
        #expect(DaemonSettings.parseDuration("1h") == .seconds(3600))
        #expect(DaemonSettings.parseDuration("-1") == nil)
        #expect(DaemonSettings.parseDuration("s") == nil)
        #expect(DaemonSettings.parseDuration("1e3") == nil)
        #expect(DaemonSettings.parseMode("0660") == 0o660)
        #expect(DaemonSettings.parseMode("0o600") == 0o600)
        #expect(DaemonSettings.parseMode("777") == 0o777)
        #expect(DaemonSettings.parseMode("8") == nil)
        #expect(DaemonSettings.parseMode("17777") == nil)
        #expect(SocketGroup(parsing: "0") == .id(0))
        #expect(SocketGroup(parsing: "authz") == .name("authz"))
        #expect(SocketGroup(parsing: "") == nil)
        #expect(Key.maxFrameSize.environmentVariable == "AUTHZD_MAX_FRAME_SIZE")
        #expect(Key.db.environmentVariable == "AUTHZD_DB")
    }

    @Test func logLinesAreTextOrJSON() {
        let text = LineLogHandler.formatLine(format: .text, message: "listening", metadata: ["socket": "/tmp/a b"])
        #expect(text.hasSuffix(" info authzd: listening socket=/tmp/a b"))
        let json = LineLogHandler.formatLine(format: .json, message: "say \"hi\"\n", metadata: ["connection": "7"])
        #expect(json.hasPrefix("{\"time\":\""))
        #expect(json.hasSuffix(",\"level\":\"info\",\"label\":\"authzd\",\"message\":\"say \\\"hi\\\"\\n\",\"connection\":\"7\"}"))
    }
}

// The metrics and health endpoints (--metrics-listen), scraped over HTTP from a real server
// on either transport: request counts by method and code, histograms that add up, the
// probes, 404/405, and bad input on the metrics port that leaves the request socket alone.

import AuthzClient
import AuthzEngine
import AuthzServer
import AuthzStore
import AuthzWire
import CoreMetrics
import Foundation
import Synchronization
import Testing
import WireTestSupport

#if canImport(Glibc)
import Glibc
#endif

// MARK: - A small blocking HTTP client

struct HTTPReply {
    var status: Int
    var headers: [String: String]
    var body: String
}

/// Connects to a metrics address (TCP or Unix), with 5 s send and receive timeouts.
func connectMetrics(_ address: MetricsAddress) throws -> Int32 {
    switch address {
    case .unix(let path):
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket(): errno \(errno)") }
        guard withUnixAddress(path, { connect(fd, $0, $1) }) == 0 else {
            let code = errno
            close(fd)
            throw TestFailure("connect(\(path)): errno \(code)")
        }
        setTimeouts(fd)
        return fd
    case .tcp(let host, let port):
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket(): errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close(fd)
            throw TestFailure("not an IPv4 address: \(host)")
        }
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        guard result == 0 else {
            let code = errno
            close(fd)
            throw TestFailure("connect(\(host):\(port)): errno \(code)")
        }
        setTimeouts(fd)
        return fd
    }
}

private func setTimeouts(_ fd: Int32) {
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
}

/// Sends `bytes` and reads until the server closes (or 5 s pass without data).
func exchangeRaw(_ address: MetricsAddress, _ bytes: [UInt8]) throws -> [UInt8] {
    let fd = try connectMetrics(address)
    defer { close(fd) }
    var offset = 0
    while offset < bytes.count {
        let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
        if sent <= 0 { break }  // the server may close early on bad input
        offset += sent
    }
    var received: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count <= 0 { break }
        received += chunk[0..<count]
    }
    return received
}

/// One HTTP/1.1 request with `Connection: close`.
func httpRequest(_ address: MetricsAddress, _ method: String = "GET", _ path: String) throws -> HTTPReply {
    let request = "\(method) \(path) HTTP/1.1\r\nHost: authzd\r\nConnection: close\r\n\r\n"
    return try parseHTTPReply(exchangeRaw(address, Array(request.utf8)))
}

func parseHTTPReply(_ bytes: [UInt8]) throws -> HTTPReply {
    let text = String(decoding: bytes, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure("no HTTP reply: \(text.prefix(200))") }
    let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
    let statusParts = lines[0].split(separator: " ")
    guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw TestFailure("bad status line: \(lines[0])") }
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return HTTPReply(status: status, headers: headers, body: String(text[split.upperBound...]))
}

// MARK: - The exposition text

/// Prometheus text exposition, parsed: every sample by name and labels.
struct Exposition {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    var samples: [Sample] = []
    var types: [String: String] = [:]

    init(_ text: String) throws {
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                types[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                throw TestFailure("bad sample line: \(line)")
            }
            let series = line[..<space]
            var labels: [String: String] = [:]
            let name: String
            if let brace = series.firstIndex(of: "{") {
                name = String(series[..<brace])
                let inner = series[series.index(after: brace)..<series.index(before: series.endIndex)]
                for pair in inner.split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    labels[String(parts[0])] = String(parts[1].dropFirst().dropLast())
                }
            } else {
                name = String(series)
            }
            samples.append(Sample(name: name, labels: labels, value: value))
        }
    }

    /// The sample with exactly these labels, or nil.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    /// Every sample of `name` added up.
    func sum(_ name: String, where filter: ([String: String]) -> Bool = { _ in true }) -> Double {
        samples.filter { $0.name == name && filter($0.labels) }.reduce(0) { $0 + $1.value }
    }

    /// A histogram's buckets (cumulative, by `le`, in order), count and sum.
    func histogram(_ name: String) -> (buckets: [(le: String, count: Double)], count: Double, sum: Double)? {
        let buckets = samples.filter { $0.name == name + "_bucket" }.map { ($0.labels["le"] ?? "", $0.value) }
        guard let count = value(name + "_count"), let sum = value(name + "_sum") else { return nil }
        return (buckets, count, sum)
    }
}

func scrape(_ address: MetricsAddress) throws -> Exposition {
    let reply = try httpRequest(address, "GET", "/metrics")
    guard reply.status == 200 else { throw TestFailure("/metrics answered \(reply.status): \(reply.body)") }
    guard reply.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true else {
        throw TestFailure("/metrics content type: \(reply.headers["content-type"] ?? "none")")
    }
    return try Exposition(reply.body)
}

/// Checks a histogram is well formed: cumulative buckets ending in +Inf == count.
func expectWellFormed(_ histogram: (buckets: [(le: String, count: Double)], count: Double, sum: Double)) {
    #expect(histogram.buckets.last?.le == "+Inf")
    #expect(histogram.buckets.last?.count == histogram.count)
    let counts = histogram.buckets.map(\.count)
    #expect(counts == counts.sorted(), "buckets are cumulative")
}

// MARK: - Tests

@Suite("Metrics endpoint")
struct MetricsTests {
    static let local = MetricsAddress.tcp(host: "127.0.0.1", port: 0)

    @Test func countsRequestsByMethodAndCodeAndTheHistogramsAddUp() async throws {
        try await withServer(configure: { $0.metricsListen = Self.local }) { server in
            let address = try #require(server.server.metricsAddress)
            guard case .tcp(_, let port) = address else { throw TestFailure("not TCP: \(address)") }
            #expect(port > 0, "port 0 is replaced by the port bound")

            let client = try await server.client()
            for _ in 0..<5 { _ = try await client.seatType(user: "u-admin") }
            for _ in 0..<3 { _ = try await client.effectivePermission(user: "u-editor", project: "p-revenue") }
            _ = try await client.canUse(user: "u-editor", asset: "a-warehouse")
            _ = try await client.batch([
                .seatType(user: "u-admin"), .seatType(user: "u-editor"), .seatType(user: "u-viewer"),
            ])
            _ = try await client.batch(Array(repeating: .seatType(user: "u-admin"), count: 20))
            _ = try await client.status()
            // No reloader: Reload is UNIMPLEMENTED.
            let reload = try await client.call(WireRequest(callId: 0, method: .reload))
            #expect(reload.status.code == .unimplemented)
            // A payload that does not decode.
            let raw = try RawConnection(path: server.socketPath)
            try raw.send(frame([0xFF, 0xFF, 0xFF, 0xFF]))
            #expect(try await raw.readResponse()?.status.code == .invalidArgument)
            // A pipelined run of 40 checks in one write (the epoll transport's fast path).
            var pipelined: [UInt8] = []
            for id in 1...40 {
                WireRequest(callId: UInt64(id), method: .check(.seatType(user: "u-viewer"))).append(to: &pipelined)
            }
            try raw.send(pipelined)
            for _ in 1...40 { #expect(try await raw.readResponse()?.status.code == .ok) }
            raw.closeSocket()
            await client.close()

            let metrics = try scrape(address)
            let ok = { (method: String) in metrics.value("authzd_requests_total", ["method": method, "code": "OK"]) }
            #expect(ok("seat_type") == 45)
            #expect(ok("effective_permission") == 3)
            #expect(ok("can_use") == 1)
            #expect(ok("batch") == 2)
            #expect(ok("status") == 1)
            #expect(ok("capabilities") == 0, "every method's OK series exists from the start")
            #expect(metrics.value("authzd_requests_total", ["method": "reload", "code": "UNIMPLEMENTED"]) == 1)
            #expect(metrics.value("authzd_requests_total", ["method": "invalid", "code": "INVALID_ARGUMENT"]) == 1)
            let requests = metrics.sum("authzd_requests_total")
            #expect(requests == 54)
            #expect(metrics.types["authzd_requests_total"] == "counter")

            let duration = try #require(metrics.histogram("authzd_request_duration_seconds"))
            expectWellFormed(duration)
            #expect(duration.count == requests, "every request answered is observed once")
            #expect(duration.sum > 0)
            #expect(metrics.types["authzd_request_duration_seconds"] == "histogram")

            let batches = try #require(metrics.histogram("authzd_batch_checks"))
            expectWellFormed(batches)
            #expect(batches.count == 2)
            #expect(batches.sum == 23)
            #expect(batches.buckets.first { $0.le == "4" }?.count == 1)
            #expect(batches.buckets.first { $0.le == "32" }?.count == 2)

            #expect(metrics.value("authzd_connections_accepted_total") == 2)
            #expect(metrics.value("authzd_snapshot_loaded") == 1)
            #expect(metrics.value("authzd_snapshot_version") == Double(server.snapshots.snapshot?.version ?? 0))
            #expect(metrics.value("authzd_snapshot_failing_closed") == 0)
            #expect(metrics.value("authzd_snapshot_loads_total", ["kind": "initial", "result": "success"]) == 1)
            #expect(metrics.value("authzd_snapshot_load_methods_total", ["method": "full"]) == 1, "the initial load reads everything")
            #expect(metrics.types["authzd_snapshot_load_methods_total"] == "counter")
            let loads = try #require(metrics.histogram("authzd_snapshot_load_duration_seconds"))
            expectWellFormed(loads)
            #expect(loads.count == 1)
            #expect(loads.sum > 0)
            #expect(metrics.types["authzd_snapshot_load_duration_seconds"] == "histogram")

            // Counters published at one scrape go on from there at the next.
            let again = try await server.client()
            _ = try await again.seatType(user: "u-admin")
            await again.close()
            let later = try scrape(address)
            #expect(later.value("authzd_requests_total", ["method": "seat_type", "code": "OK"]) == 46)
            #expect(later.histogram("authzd_request_duration_seconds")?.count == 55)
        }
    }

    @Test func readyzWaitsForASnapshotAndHealthzForTheLoops() async throws {
        try await withServer(workspace: nil, configure: { $0.metricsListen = Self.local }) { server in
            let address = try #require(server.server.metricsAddress)
            let notReady = try httpRequest(address, "GET", "/readyz")
            #expect(notReady.status == 503)
            #expect(notReady.body.hasPrefix("not ready: no snapshot is loaded"), "\(notReady.body)")
            #expect(notReady.body.filter { $0 == "\n" }.count == 1, "one line")
            #expect(try httpRequest(address, "GET", "/healthz").status == 200, "alive without a snapshot")
            #expect(try scrape(address).value("authzd_snapshot_loaded") == 0)

            try makeDatabase(server.configuration.databasePath)
            _ = server.snapshots.load(databasePath: server.configuration.databasePath)
            let ready = try httpRequest(address, "GET", "/readyz")
            #expect(ready.status == 200)
            #expect(ready.body == "ready\n")
            let metrics = try scrape(address)
            #expect(metrics.value("authzd_snapshot_loaded") == 1)
            #expect(metrics.value("authzd_snapshot_loads_total", ["kind": "initial", "result": "failure"]) == 1)
            #expect(metrics.value("authzd_snapshot_loads_total", ["kind": "initial", "result": "success"]) == 1)

            let alive = try httpRequest(address, "GET", "/healthz")
            #expect(alive.status == 200)
            #expect(alive.body == "alive\n")
        }
    }

    @Test func readyzIs503WhileFailingClosed() async throws {
        let failing = Atomic<Bool>(false)
        let loader: SnapshotReloader.Loader = { path throws(StoreError) in
            if failing.load(ordering: .relaxed) { throw StoreError(code: .io, message: "injected failure") }
            return try SnapshotLoader.load(path: path)
        }
        try await withServer(reloading: .init(loader: loader), configure: { configuration in
            watchOnly(&configuration)
            configuration.maxStaleness = .milliseconds(300)
            configuration.metricsListen = Self.local
        }) { server in
            let address = try #require(server.server.metricsAddress)
            #expect(try httpRequest(address, "GET", "/readyz").status == 200)
            failing.store(true, ordering: .relaxed)
            _ = try Writer(server.configuration.databasePath).touch()
            try await eventually(.seconds(10), "readyz fails closed") {
                try httpRequest(address, "GET", "/readyz").status == 503
            }
            let reply = try httpRequest(address, "GET", "/readyz")
            #expect(reply.body.hasPrefix("not ready: failing closed: "), "\(reply.body)")
            #expect(reply.body.contains("injected failure"))
            let metrics = try scrape(address)
            #expect(metrics.value("authzd_snapshot_failing_closed") == 1)
            #expect(metrics.sum("authzd_snapshot_loads_total") { $0["result"] == "failure" } >= 1)
            #expect((metrics.value("authzd_snapshot_stale_seconds") ?? 0) > 0)
            #expect(try httpRequest(address, "GET", "/healthz").status == 200, "alive while failing closed")
            failing.store(false, ordering: .relaxed)
            try await eventually(.seconds(10), "readyz recovers") {
                try httpRequest(address, "GET", "/readyz").status == 200
            }
            let healed = try scrape(address)
            #expect(healed.value("authzd_snapshot_failing_closed") == 0)
            #expect(healed.sum("authzd_snapshot_loads_total") { $0["result"] == "success" && $0["kind"] != "initial" } >= 1)
        }
    }

    @Test func otherPathsAre404AndOtherMethods405() async throws {
        try await withServer(configure: { $0.metricsListen = Self.local }) { server in
            let address = try #require(server.server.metricsAddress)
            #expect(try httpRequest(address, "GET", "/").status == 404)
            #expect(try httpRequest(address, "GET", "/metricsz").status == 404)
            let post = try httpRequest(address, "POST", "/metrics")
            #expect(post.status == 405)
            #expect(post.headers["allow"] == "GET")
            #expect(try httpRequest(address, "DELETE", "/readyz").status == 405)
            #expect(try httpRequest(address, "GET", "/metrics?name=x").status == 200, "a query string is ignored")
        }
    }

    @Test func garbageOnTheMetricsPortDoesNotTouchTheRequestSocket() async throws {
        try await withServer(configure: { $0.metricsListen = Self.local }) { server in
            let address = try #require(server.server.metricsAddress)
            let client = try await server.client()
            _ = try await client.seatType(user: "u-admin")

            let garbage = try parseHTTPReply(exchangeRaw(address, Array("\u{1}\u{2}NOT HTTP AT ALL\r\n\r\n".utf8)))
            #expect(garbage.status == 400)
            let huge = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "a", count: 200 * 1024) + "\r\n\r\n"
            let hugeReply = try exchangeRaw(address, Array(huge.utf8))
            #expect(
                hugeReply.isEmpty || String(decoding: hugeReply, as: UTF8.self).hasPrefix("HTTP/1.1 400"),
                "headers over the limit are refused")
            // Half a request, then hang up.
            let half = try connectMetrics(address)
            _ = Array("GET /metr".utf8).withUnsafeBytes { send(half, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(half)

            for _ in 0..<10 { #expect(try await client.seatType(user: "u-admin").result.seat == .paidAuthor) }
            #expect(try httpRequest(address, "GET", "/healthz").status == 200)
            let metrics = try scrape(address)
            #expect(metrics.value("authzd_requests_total", ["method": "seat_type", "code": "OK"]) == 11)
            await client.close()
        }
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() async throws {
        try await withServer(configure: { $0.metricsListen = Self.local }) { server in
            let address = try #require(server.server.metricsAddress)
            let requests =
                "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
                + "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            let text = String(decoding: try exchangeRaw(address, Array(requests.utf8)), as: UTF8.self)
            #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count == 4, "\(text.prefix(300))")
        }
    }

    @Test func withoutTheFlagThereIsNoEndpoint() async throws {
        try await withServer { server in
            #expect(server.server.metricsAddress == nil)
            #expect(server.server.metricsFactory == nil)
        }
    }

    @Test func swiftMetricsRecordedThroughTheFactoryAreServed() async throws {
        try await withServer(configure: { $0.metricsListen = Self.local }) { server in
            let address = try #require(server.server.metricsAddress)
            let factory = try #require(server.server.metricsFactory)
            let counter = CoreMetrics.Counter(
                label: "authzd_test_events_total", dimensions: [("source", "test")], factory: factory)
            counter.increment(by: 3)
            let metrics = try scrape(address)
            #expect(metrics.value("authzd_test_events_total", ["source": "test"]) == 3)
            #expect(metrics.value("authzd_requests_total", ["method": "seat_type", "code": "OK"]) == 0)
        }
    }

    @Test func addressesParse() {
        #expect(MetricsAddress(parsing: "127.0.0.1:9464") == .tcp(host: "127.0.0.1", port: 9464))
        #expect(MetricsAddress(parsing: "localhost:0") == .tcp(host: "localhost", port: 0))
        #expect(MetricsAddress(parsing: "[::1]:9464") == .tcp(host: "::1", port: 9464))
        #expect(MetricsAddress(parsing: "/run/authzd/metrics.sock") == .unix("/run/authzd/metrics.sock"))
        #expect(MetricsAddress(parsing: "./metrics.sock") == .unix("./metrics.sock"))
        let bad = ["", "9464", ":9464", "host:", "host:99999", "host:-1", "metrics.sock", "[::1:9464", "a b:1", "./", "/tmp/"]
        for bad in bad {
            #expect(MetricsAddress(parsing: bad) == nil, "\(bad)")
        }
        #expect(MetricsAddress.tcp(host: "::1", port: 1).description == "[::1]:1")
    }

    @Test func theFlagAndItsVariableResolve() throws {
        let base: [DaemonSettings.Key: String] = [.socket: "/tmp/a.sock", .db: "/tmp/a.db"]
        #expect(try DaemonSettings.resolve(flags: base, environment: [:]).server.metricsListen == nil, "off by default")
        var flags = base
        flags[.metricsListen] = "127.0.0.1:9464"
        let fromFlag = try DaemonSettings.resolve(flags: flags, environment: ["AUTHZD_METRICS_LISTEN": "/run/m.sock"])
        #expect(fromFlag.server.metricsListen == .tcp(host: "127.0.0.1", port: 9464), "the flag wins")
        let fromVariable = try DaemonSettings.resolve(flags: base, environment: ["AUTHZD_METRICS_LISTEN": "/run/m.sock"])
        #expect(fromVariable.server.metricsListen == .unix("/run/m.sock"))
        flags[.metricsListen] = "/tmp/a.sock"
        #expect(throws: ConfigurationError.self) { try DaemonSettings.resolve(flags: flags, environment: [:]) }
    }
}

@Suite(
    "authzd --metrics-listen",
    .enabled(if: authzdPath != nil, "the authzd executable is built by `swift test` next to the tests"))
struct DaemonMetricsTests {
    @Test func anInvalidAddressIsAClearStartupError() async throws {
        let directory = try TestDirectory()
        let daemon = try Daemon(
            arguments: ["--socket", directory.file("s.sock"), "--db", directory.file("d.db"), "--metrics-listen", "9464"],
            directory: directory)
        #expect(try await daemon.waitForExit() == 64)
        #expect(daemon.stderr.contains("--metrics-listen: '9464' is not a metrics address"), "\(daemon.stderr)")
        #expect(!fileExists(directory.file("s.sock")))

        let fromEnvironment = try Daemon(
            arguments: ["--socket", directory.file("s.sock"), "--db", directory.file("d.db")],
            environment: ["AUTHZD_METRICS_LISTEN": "localhost"], directory: directory, name: "env.log")
        #expect(try await fromEnvironment.waitForExit() == 64)
        #expect(fromEnvironment.stderr.contains("AUTHZD_METRICS_LISTEN: 'localhost' is not a metrics address"))
    }

    @Test func anAddressInUseStopsTheDaemonAtStart() async throws {
        let directory = try TestDirectory()
        let database = directory.file("authz.db")
        try makeDatabase(database)
        // Something else holds the metrics socket path.
        let taken = directory.file("metrics.sock")
        _ = FileManager.default.createFile(atPath: taken, contents: Data("not a socket".utf8))
        let daemon = try Daemon(
            arguments: ["--socket", directory.file("authz.sock"), "--db", database, "--metrics-listen", taken],
            directory: directory)
        #expect(try await daemon.waitForExit() != 0)
        #expect(daemon.stderr.contains("is not a socket"), "\(daemon.stderr)")
        #expect(!fileExists(directory.file("authz.sock")), "the request socket was never published")
    }

    @Test func scrapesARealDaemonOverAUnixSocket() async throws {
        let directory = try TestDirectory()
        let socket = directory.file("authz.sock")
        let metricsSocket = directory.file("metrics.sock")
        let database = directory.file("authz.db")
        let version = try makeDatabase(database)
        let daemon = try Daemon(
            arguments: [
                "--socket", socket, "--db", database, "--transport", testTransport.rawValue,
                "--metrics-listen", metricsSocket,
            ],
            directory: directory)
        let client = try await connectWhenListening(socket, daemon)
        let address = MetricsAddress.unix(metricsSocket)
        #expect(try httpRequest(address, "GET", "/readyz").status == 200)
        #expect(try httpRequest(address, "GET", "/healthz").status == 200)
        for _ in 0..<7 { _ = try await client.seatType(user: "u-admin") }
        _ = try await client.call(
            WireRequest(callId: 0, method: .check(.effectivePermission(.init(user: "u-ghost", project: "p-nowhere")))))
        await client.close()

        let metrics = try scrape(address)
        #expect(metrics.value("authzd_requests_total", ["method": "seat_type", "code": "OK"]) == 7)
        #expect(metrics.sum("authzd_requests_total") == 8)
        #expect(metrics.histogram("authzd_request_duration_seconds")?.count == 8)
        #expect(metrics.value("authzd_snapshot_version") == Double(version))
        #expect(metrics.value("authzd_snapshot_loads_total", ["kind": "initial", "result": "success"]) == 1)
        #expect(metrics.value("authzd_snapshot_watch_active") == 1)
        #expect(metrics.value("authzd_connections_open") == 0 || metrics.value("authzd_connections_open") == 1)
        #expect(daemon.stderr.contains("metrics listening"))

        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(try await daemon.waitForExit() == 0, "\(daemon.stderr)")
        #expect(!fileExists(metricsSocket), "the metrics socket file is removed at exit")
    }
}

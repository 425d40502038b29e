// The server's metrics, as `/metrics` serves them (Prometheus text exposition).
//
// The request path writes only its loop's `RequestStats` shard. A scrape, under one mutex:
// sums the shards; turns the totals into swift-prometheus counters (incremented by what
// they grew since the last scrape) and gauges (set), read with the rest of the server's
// state (connections, the snapshot, the reloader); has the registry emit them; then appends
// the three histograms.
//
// The two request histograms are the one part of the text written here rather than by
// swift-prometheus: its `Histogram` takes one observation per `record` under a lock, so it
// can be fed neither from the request path (a lock per request) nor at scrape time from
// counts already bucketed by the shards (it has no way to add n observations to a bucket).
// They are written exactly as its own `Histogram` writes them (cumulative `_bucket{le=...}`
// lines, a `+Inf` bucket, `_sum`, `_count`), after `# HELP` and `# TYPE` lines. The snapshot
// load histogram is swift-prometheus's own: loads are rare, so each scrape records the loads
// timed since the last one.

import AuthzWire
import CoreMetrics
import Prometheus
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

final class ServerMetrics: Sendable {
    private struct Shards {
        var all: [RequestStats] = []
        var byLoop: [ObjectIdentifier: RequestStats] = [:]
    }

    private let shards = Mutex(Shards())
    /// Connections accepted (served or refused).
    let connectionsAccepted = Atomic<UInt64>(0)
    /// Connections answered RESOURCE_EXHAUSTED and closed: over --max-connections, or out of
    /// file descriptors.
    let refusedOverLimit = Atomic<UInt64>(0)
    let refusedNoDescriptors = Atomic<UInt64>(0)

    private let registry = PrometheusCollectorRegistry()
    private let scrape: Mutex<Published>

    /// Totals published to the registry's counters so far.
    private struct Published {
        var requests: [UInt64]
        var requestCounters: [Int: Prometheus.Counter] = [:]
        var loads: [String: UInt64] = [:]
        var accepted: UInt64 = 0
        var refusedLimit: UInt64 = 0
        var refusedDescriptors: UInt64 = 0
        var fileEvents: UInt64 = 0
        var timedLoads: UInt64 = 0
        var decisions: [String: UInt64] = [:]
        var decisionWriteErrors: UInt64 = 0
    }

    init() {
        scrape = Mutex(Published(requests: [UInt64](repeating: 0, count: StatsLayout.methods * StatsLayout.codes)))
    }

    /// A swift-metrics factory writing into this registry: what is recorded through it (by
    /// authzd's own `MetricsSystem`, e.g. a library's metrics) is served with the rest.
    var factory: any MetricsFactory {
        PrometheusMetricsFactory(registry: registry)
    }

    // MARK: Shards

    /// A shard for a loop that keeps it (an epoll loop).
    func makeShard() -> RequestStats {
        let shard = RequestStats()
        shards.withLock { $0.all.append(shard) }
        return shard
    }

    /// The shard of the event loop `loop` (made on first use): every connection on that
    /// loop writes it, from that loop's thread only.
    func shard(forLoop loop: ObjectIdentifier) -> RequestStats {
        shards.withLock { shards in
            if let shard = shards.byLoop[loop] { return shard }
            let shard = RequestStats()
            shards.byLoop[loop] = shard
            shards.all.append(shard)
            return shard
        }
    }

    /// Every shard's counters added up.
    func totals() -> [UInt64] {
        var totals = [UInt64](repeating: 0, count: StatsLayout.slots)
        for shard in shards.withLock({ $0.all }) { shard.accumulate(into: &totals) }
        return totals
    }

    // MARK: The scrape

    /// The exposition text of every metric now.
    func render(_ context: ServerContext) -> [UInt8] {
        scrape.withLock { published in
            let totals = totals()
            publishRequests(totals, &published)
            publishConnections(context, &published)
            publishDecisionLog(context, &published)
            publishSnapshot(context, &published)
            var buffer: [UInt8] = []
            buffer.reserveCapacity(16 * 1024)
            registry.emit(into: &buffer)
            let durationBuckets = (0...StatsLayout.durationBoundsNs.count).map { totals[StatsLayout.durationBuckets + $0] }
            Self.appendHistogram(
                into: &buffer, name: "authzd_request_duration_seconds",
                help: "Server-side time from reading a request's frame to queueing its answer.",
                bounds: StatsLayout.durationBoundsNs.map { Self.decimalSeconds(nanoseconds: $0) },
                counts: durationBuckets,
                sum: Self.decimalSeconds(nanoseconds: totals[StatsLayout.durationSumNs]))
            let batchBuckets = (0...StatsLayout.batchBounds.count).map { totals[StatsLayout.batchBuckets + $0] }
            Self.appendHistogram(
                into: &buffer, name: "authzd_batch_checks", help: "Checks per Batch request.",
                bounds: StatsLayout.batchBounds.map { String($0) }, counts: batchBuckets,
                sum: String(totals[StatsLayout.batchSum]))
            return buffer
        }
    }

    private func publishRequests(_ totals: [UInt64], _ published: inout Published) {
        for method in RequestMethod.allCases {
            for code in RPCCodeLabel.all {
                let index = method.rawValue * StatsLayout.codes + Int(code.code.rawValue)
                let total = totals[StatsLayout.requests + index]
                // Every method's OK series exists from the start; others once seen.
                guard total > 0 || (code.code == .ok && method != .invalid) else { continue }
                let series: Prometheus.Counter
                if let existing = published.requestCounters[index] {
                    series = existing
                } else {
                    series = counter(
                        "authzd_requests_total",
                        "Requests answered, by method (the request's field, or invalid) and status code.",
                        labels: [("method", method.label), ("code", code.label)])
                    published.requestCounters[index] = series
                }
                Self.advance(series, from: &published.requests[index], to: total)
            }
        }
    }

    private func publishConnections(_ context: ServerContext, _ published: inout Published) {
        gauge("authzd_connections_open", "Client connections open now.")
            .set(Int64(max(0, context.connectionsOpen.load(ordering: .relaxed))))
        Self.advance(
            counter("authzd_connections_accepted_total", "Client connections accepted (served or refused)."),
            from: &published.accepted, to: connectionsAccepted.load(ordering: .relaxed))
        let refused = "Client connections answered RESOURCE_EXHAUSTED and closed, by reason."
        Self.advance(
            counter("authzd_connections_refused_total", refused, labels: [("reason", "max_connections")]),
            from: &published.refusedLimit, to: refusedOverLimit.load(ordering: .relaxed))
        Self.advance(
            counter("authzd_connections_refused_total", refused, labels: [("reason", "file_descriptors")]),
            from: &published.refusedDescriptors, to: refusedNoDescriptors.load(ordering: .relaxed))
    }

    /// The decision log's events (without a decision log: none of these series).
    private func publishDecisionLog(_ context: ServerContext, _ published: inout Published) {
        guard let statistics = context.decisions?.statistics else { return }
        let help = "Decisions the decision log wrote, dropped (a loop's buffer was full) or lost (a failed write)."
        for (result, value) in [("written", statistics.written), ("dropped", statistics.dropped), ("lost", statistics.lost)] {
            var last = published.decisions[result] ?? 0
            Self.advance(counter("authzd_decision_log_events_total", help, labels: [("result", result)]), from: &last, to: value)
            published.decisions[result] = last
        }
        Self.advance(
            counter("authzd_decision_log_write_errors_total", "Failed writes (or opens) of the decision log."),
            from: &published.decisionWriteErrors, to: statistics.writeErrors)
    }

    /// Upper bounds of the snapshot load duration buckets.
    static let loadDurationBounds: [Duration] = [
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]

    private func publishSnapshot(_ context: ServerContext, _ published: inout Published) {
        let state = context.snapshots.current
        let nowMs = WallClock.nowUnixMs()
        gauge("authzd_snapshot_version", "Version of the snapshot in service (0: none).")
            .set(Int64(clamping: state.snapshot?.version ?? 0))
        gauge("authzd_snapshot_loaded", "1 when a snapshot is in service, else 0.")
            .set(Int64(state.snapshot == nil ? 0 : 1))
        let since: Double
        if state.snapshot != nil, state.loadedAtUnixMs > 0 {
            since = Double(nowMs &- min(nowMs, state.loadedAtUnixMs)) / 1000
        } else {
            let uptime = ContinuousClock.now - context.startedAt
            since = Double(uptime.components.seconds) + Double(uptime.components.attoseconds) / 1e18
        }
        gauge(
            "authzd_snapshot_seconds_since_last_successful_load",
            "Seconds since the snapshot in service was loaded (with none loaded: since the server started)."
        ).set(since)
        gauge(
            "authzd_snapshot_stale_seconds",
            "Seconds reloads have been failing while an older snapshot stays in service (0 when healthy)."
        ).set(Double(state.staleForMs(now: nowMs)) / 1000)
        gauge(
            "authzd_snapshot_failing_closed",
            "1 when checks are answered UNAVAILABLE because reloads failed for longer than --max-staleness."
        ).set(Int64(context.failClosedReason() == nil ? 0 : 1))
        gauge(
            "authzd_requests_waiting_for_snapshot",
            "Requests parked until a newer snapshot (min_snapshot_version) is in service."
        ).set(Int64(context.snapshots.waitingRequests))
        let loads = context.snapshots.loadStatistics
        for kind in SnapshotLoadKind.allCases {
            for result in SnapshotLoadResult.allCases {
                let total = loads.count(kind, result)
                let key = kind.rawValue + "/" + result.rawValue
                guard total > 0 || published.loads[key] != nil else { continue }
                let series = counter(
                    "authzd_snapshot_loads_total",
                    "Checks and loads of the database, by why (kind) and how they ended (result).",
                    labels: [("kind", kind.rawValue), ("result", result.rawValue)])
                Self.advance(series, from: &published.loads[key, default: 0], to: total)
            }
        }
        let methodHelp = "Successful snapshot loads by method: full (everything read) or delta (the changed rows applied to the snapshot in service)."
        for (method, total) in [("full", loads.fullLoads), ("delta", loads.deltaLoads)] {
            Self.advance(
                counter("authzd_snapshot_load_methods_total", methodHelp, labels: [("method", method)]),
                from: &published.loads["method/" + method, default: 0], to: total)
        }
        Self.advance(
            counter(
                "authzd_snapshot_delta_fallbacks_total",
                "Delta reloads that loaded everything instead (a gap in the change log, a replaced file, too many changes, a settings or entity change)."),
            from: &published.loads["fallbacks", default: 0], to: loads.deltaFallbacks)
        if let reloader = context.reloader {
            let statistics = reloader.statistics
            Self.advance(
                counter(
                    "authzd_snapshot_file_events_total",
                    "File-watch (inotify) events about the database seen by the reloader."),
                from: &published.fileEvents, to: statistics.fileEvents)
            gauge(
                "authzd_snapshot_watch_active",
                "1 when the file watch covers the database (its directory and every symlink on the way)."
            ).set(Int64(statistics.watching ? 1 : 0))
        }
        let loadDurations = registry.makeDurationHistogram(
            descriptor: Self.named(
                "authzd_snapshot_load_duration_seconds",
                "Time to build a snapshot from the database, for successful loads."),
            buckets: Self.loadDurationBounds)
        for duration in loads.durations(after: published.timedLoads) { loadDurations.record(duration) }
        published.timedLoads = loads.timedLoads
    }

    private func gauge(_ name: String, _ help: String) -> Prometheus.Gauge {
        registry.makeGauge(descriptor: Self.named(name, help))
    }

    private func counter(_ name: String, _ help: String, labels: [(String, String)] = []) -> Prometheus.Counter {
        registry.makeCounter(descriptor: Self.named(name, help), labels: labels)
    }

    /// A metric's name (used as is: no namespace, subsystem or unit added) and help text.
    private static func named(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Increments `counter` by what `total` grew since `published`.
    private static func advance(_ counter: Prometheus.Counter, from published: inout UInt64, to total: UInt64) {
        guard total > published else { return }
        counter.increment(by: Int64(clamping: total - published))
        published = total
    }

    // MARK: Hand-written histograms (see the top of this file)

    static func appendHistogram(
        into buffer: inout [UInt8], name: String, help: String, bounds: [String], counts: [UInt64], sum: String
    ) {
        var text = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        var cumulative: UInt64 = 0
        for (index, bound) in bounds.enumerated() {
            cumulative &+= counts[index]
            text += "\(name)_bucket{le=\"\(bound)\"} \(cumulative)\n"
        }
        cumulative &+= counts[bounds.count]
        text += "\(name)_bucket{le=\"+Inf\"} \(cumulative)\n"
        text += "\(name)_sum \(sum)\n"
        text += "\(name)_count \(cumulative)\n"
        buffer.append(contentsOf: text.utf8)
    }

    /// Nanoseconds as decimal seconds, exactly: 2500 -> "0.0000025".
    static func decimalSeconds(nanoseconds: UInt64) -> String {
        let whole = nanoseconds / 1_000_000_000
        let fraction = nanoseconds % 1_000_000_000
        guard fraction > 0 else { return String(whole) }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 9 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }
}

/// A status code and its label (the code's name, as the wire and authzctl spell it).
struct RPCCodeLabel {
    var code: RPCCode
    var label: String

    static let all: [RPCCodeLabel] = RPCCode.allCases.map { RPCCodeLabel(code: $0, label: $0.name) }
}

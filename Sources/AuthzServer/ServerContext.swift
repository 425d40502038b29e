// What every connection of one server shares, whichever transport serves it: the
// configuration, the snapshot holder, the reloader, the counters behind Status.

import AuthzWire
import Logging
import Synchronization

/// State shared by every connection of one server.
final class ServerContext: Sendable {
    let configuration: ServerConfiguration
    let snapshots: SnapshotHolder
    let logger: Logger
    let startedAt: ContinuousClock.Instant
    let connectionsOpen = Atomic<Int>(0)
    let requestsServed = Atomic<UInt64>(0)
    let nextConnectionID = Atomic<UInt64>(1)
    let reloader: SnapshotReloader?
    /// Who may call Reload (SO_PEERCRED uid): the daemon's own user and root.
    let reloadAllowed: @Sendable (UInt32) -> Bool
    /// The metrics (per-loop shards, connection counters); nil unless `metricsListen` is set.
    let metrics: ServerMetrics?
    /// The decision log; nil unless `decisionLog` is set (and could be opened).
    let decisions: DecisionLog?

    init(
        configuration: ServerConfiguration, snapshots: SnapshotHolder, reloader: SnapshotReloader?, logger: Logger,
        reloadAllowed: @escaping @Sendable (UInt32) -> Bool, decisions: DecisionLog? = nil
    ) {
        self.configuration = configuration
        self.snapshots = snapshots
        self.reloader = reloader
        self.logger = logger
        self.reloadAllowed = reloadAllowed
        self.startedAt = .now
        self.metrics = configuration.metricsListen == nil ? nil : ServerMetrics()
        self.decisions = decisions
    }

    /// Why checks must not be answered from the snapshot in service (`--max-staleness`
    /// exceeded), or nil. Lock-free while loads succeed.
    func failClosedReason() -> String? {
        guard let maxStaleness = configuration.maxStaleness,
            let since = snapshots.failingSinceUnixMs
        else { return nil }
        let now = WallClock.nowUnixMs()
        let limit = UInt64(maxStaleness.milliseconds())
        guard now > since, now - since > limit else { return nil }
        let error = snapshots.current.lastLoadError ?? "unknown error"
        return
            "the snapshot in service has failed to refresh for \(now - since) ms, more than --max-staleness \(maxStaleness): refusing to answer from it (last load error: \(error))"
    }

    func status() -> WireResponse.StatusResult {
        let state = snapshots.current
        let now = WallClock.nowUnixMs()
        let snapshot = state.snapshot
        let uptime = ContinuousClock.now - startedAt
        return WireResponse.StatusResult(
            snapshotVersion: snapshot?.version ?? 0,
            loadedAtUnixMs: state.loadedAtUnixMs,
            users: UInt64(snapshot?.userCount ?? 0),
            groups: UInt64(snapshot?.groupCount ?? 0),
            assets: UInt64(snapshot?.assetCount ?? 0),
            projects: UInt64(snapshot?.projectCount ?? 0),
            grants: UInt64(snapshot?.grantCount ?? 0),
            lastLoadError: state.lastLoadError ?? "",
            lastLoadAttemptUnixMs: state.lastLoadAttemptUnixMs,
            staleForMs: state.staleForMs(now: now),
            uptimeMs: UInt64(max(0, uptime.milliseconds())),
            connectionsOpen: UInt64(max(0, connectionsOpen.load(ordering: .relaxed))),
            requestsServed: requestsServed.load(ordering: .relaxed),
            lastLoadMethod: snapshot == nil ? "" : snapshots.loadStatistics.lastMethod?.rawValue ?? "",
            watching: reloader?.statistics.watching ?? false)
    }
}

extension Duration {
    /// Whole milliseconds (rounded down, or up with `roundingUp`).
    func milliseconds(roundingUp: Bool = false) -> Int64 {
        let (seconds, attoseconds) = components
        let whole = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        let remainder = attoseconds % 1_000_000_000_000_000
        return roundingUp && remainder > 0 ? whole + 1 : whole
    }
}

// The snapshot in service. Requests read the reference (one short uncontended lock per
// read batch); the reloader swaps it atomically. A request that got the old snapshot
// finishes on it: `Snapshot` is immutable and reference-counted.
//
// Also where requests with a consistency token wait: `waitForVersion` parks a promise that
// `install` completes as soon as a snapshot at least that new is in service.

public import AuthzEngine
public import AuthzStore
public import NIOCore
import Synchronization

/// Holds the current `Snapshot` (or none) and the outcome of the last load attempt.
///
/// Thread-safe. `snapshot` is what the request path reads; `install(_:)`,
/// `recordLoadFailure(_:)` and `load(databasePath:)` are what the reloader calls.
public final class SnapshotHolder: Sendable {
    /// The holder's whole state, as Status reports it.
    public struct State: Sendable {
        /// The snapshot in service; nil until one was loaded.
        public var snapshot: Snapshot?
        /// When `snapshot` was installed (Unix ms); 0 without one.
        public var loadedAtUnixMs: UInt64 = 0
        /// Why the last load attempt failed; nil when it succeeded (or none was made).
        public var lastLoadError: String?
        /// When the last load was attempted (Unix ms); 0 before any.
        public var lastLoadAttemptUnixMs: UInt64 = 0
        /// The first failed attempt since the last success (Unix ms); nil when the last
        /// attempt succeeded.
        public var failingSinceUnixMs: UInt64?
        /// Snapshots installed so far (the first load included).
        public var loads: UInt64 = 0

        /// How long loads have been failing while an older snapshot stays in service, in ms
        /// at `now`; 0 when the last load succeeded or no snapshot is served.
        public func staleForMs(now: UInt64) -> UInt64 {
            guard snapshot != nil, let since = failingSinceUnixMs, now > since else { return 0 }
            return now - since
        }
    }

    private struct Waiter {
        var id: UInt64
        var minVersion: UInt64
        var resume: @Sendable (Snapshot) -> Void
    }

    private struct Inner {
        var state = State()
        var waiters: [Waiter] = []
        var nextWaiterID: UInt64 = 0
    }

    private let inner: Mutex<Inner>
    private let attempts = Mutex(SnapshotLoadStatistics())
    /// The snapshot `load(databasePath:)` installed and the file it was read from
    /// (identified before the read): a reloader may apply deltas to it. Weak: it says
    /// nothing once that snapshot is gone.
    private let initialLoad = Mutex(InitialLoad())

    struct InitialLoad {
        weak var snapshot: Snapshot?
        var file: DatabaseFileIdentity?
    }

    /// The snapshot `load(databasePath:)` installed, if it is still alive, and the file it
    /// was read from.
    var initialSnapshotFile: (snapshot: Snapshot, file: DatabaseFileIdentity)? {
        initialLoad.withLock { load in
            guard let snapshot = load.snapshot, let file = load.file else { return nil }
            return (snapshot, file)
        }
    }
    /// `failingSinceUnixMs` (0 = not failing), readable without the lock by the request
    /// path's fail-closed check.
    private let failingSince = Atomic<UInt64>(0)

    /// A holder serving `snapshot` (none by default).
    public init(snapshot: Snapshot? = nil) {
        var initial = Inner()
        if let snapshot {
            let now = WallClock.nowUnixMs()
            initial.state.snapshot = snapshot
            initial.state.loadedAtUnixMs = now
            initial.state.lastLoadAttemptUnixMs = now
            initial.state.loads = 1
        }
        inner = Mutex(initial)
    }

    /// The snapshot in service, or nil.
    public var snapshot: Snapshot? {
        inner.withLock { $0.state.snapshot }
    }

    /// A copy of the whole state.
    public var current: State {
        inner.withLock { $0.state }
    }

    /// Since when (Unix ms) loads have been failing with a snapshot in service; nil when
    /// healthy. Lock-free.
    public var failingSinceUnixMs: UInt64? {
        let value = failingSince.load(ordering: .relaxed)
        return value == 0 ? nil : value
    }

    /// Puts `snapshot` in service (atomically for every later read), records a successful
    /// load and wakes the requests waiting for this version or an older one. Returns the
    /// snapshot it replaced.
    @discardableResult
    public func install(_ snapshot: Snapshot) -> Snapshot? {
        let now = WallClock.nowUnixMs()
        let (previous, ready) = inner.withLock { inner -> (Snapshot?, [Waiter]) in
            let previous = inner.state.snapshot
            inner.state.snapshot = snapshot
            inner.state.loadedAtUnixMs = now
            inner.state.lastLoadAttemptUnixMs = now
            inner.state.lastLoadError = nil
            inner.state.failingSinceUnixMs = nil
            inner.state.loads += 1
            var ready: [Waiter] = []
            inner.waiters.removeAll { waiter in
                guard waiter.minVersion <= snapshot.version else { return false }
                ready.append(waiter)
                return true
            }
            return (previous, ready)
        }
        failingSince.store(0, ordering: .relaxed)
        for waiter in ready { waiter.resume(snapshot) }
        return previous
    }

    /// Records that the snapshot in service is still the database's current state (the
    /// version and file did not change), ending a failure streak without reinstalling.
    public func recordUpToDate() {
        let now = WallClock.nowUnixMs()
        inner.withLock { inner in
            inner.state.lastLoadAttemptUnixMs = now
            inner.state.lastLoadError = nil
            inner.state.failingSinceUnixMs = nil
        }
        failingSince.store(0, ordering: .relaxed)
    }

    /// Records a failed load attempt; the snapshot in service (if any) stays. Returns true
    /// when this starts a failure streak.
    @discardableResult
    public func recordLoadFailure(_ message: String) -> Bool {
        let now = WallClock.nowUnixMs()
        let (news, since) = inner.withLock { inner -> (Bool, UInt64?) in
            let news = inner.state.failingSinceUnixMs == nil
            inner.state.lastLoadError = message
            inner.state.lastLoadAttemptUnixMs = now
            if inner.state.failingSinceUnixMs == nil { inner.state.failingSinceUnixMs = now }
            return (news, inner.state.snapshot == nil ? nil : inner.state.failingSinceUnixMs)
        }
        failingSince.store(since ?? 0, ordering: .relaxed)
        return news
    }

    /// Loads the database read-only and installs the snapshot, or records why it could not
    /// (an `initial` load in `loadStatistics`).
    @discardableResult
    public func load(databasePath: String) -> Result<Snapshot, StoreError> {
        let started = ContinuousClock.now
        let file = DatabaseFileIdentity.of(databasePath)
        do throws(StoreError) {
            let snapshot = try SnapshotLoader.load(path: databasePath)
            initialLoad.withLock { $0 = InitialLoad(snapshot: snapshot, file: file) }
            install(snapshot)
            recordAttempt(.initial, .success, duration: ContinuousClock.now - started)
            recordMethod(.full)
            return .success(snapshot)
        } catch {
            recordLoadFailure(error.description)
            recordAttempt(.initial, .failure)
            return .failure(error)
        }
    }

    /// Counts a check or load of the database (for metrics); `duration` is a successful
    /// load's.
    public func recordAttempt(_ kind: SnapshotLoadKind, _ result: SnapshotLoadResult, duration: Duration? = nil) {
        attempts.withLock { $0.record(kind, result, duration: duration) }
    }

    /// Counts how a successful load built its snapshot (for metrics and Status-like
    /// introspection); `fellBack`: a delta was tried and a full load done instead.
    public func recordMethod(_ method: SnapshotLoadMethod, fellBack: Bool = false) {
        attempts.withLock { $0.recordMethod(method, fellBack: fellBack) }
    }

    /// The checks and loads counted so far.
    public var loadStatistics: SnapshotLoadStatistics {
        attempts.withLock { $0 }
    }

    /// Calls `resume` (on the installing thread) with the first snapshot at least
    /// `minVersion` new to be installed. Returns that snapshot at once instead if the one in
    /// service qualifies (`resume` is then never called), else a waiter id for
    /// `cancelWait`.
    public func waitForVersion(
        _ minVersion: UInt64, resume: @escaping @Sendable (Snapshot) -> Void
    ) -> (ready: Snapshot?, waiter: UInt64) {
        inner.withLock { inner in
            if let snapshot = inner.state.snapshot, snapshot.version >= minVersion { return (snapshot, 0) }
            inner.nextWaiterID += 1
            inner.waiters.append(Waiter(id: inner.nextWaiterID, minVersion: minVersion, resume: resume))
            return (nil, inner.nextWaiterID)
        }
    }

    /// Withdraws a waiter. Returns false if it was resumed (or withdrawn) already.
    @discardableResult
    public func cancelWait(_ waiter: UInt64) -> Bool {
        inner.withLock { inner in
            guard let index = inner.waiters.firstIndex(where: { $0.id == waiter }) else { return false }
            inner.waiters.remove(at: index)
            return true
        }
    }

    /// A future for the first snapshot at least `minVersion` new, completed on
    /// `eventLoop`: at once if the snapshot in service qualifies, else when one is
    /// installed, or at `deadline` with whatever is in service then (possibly older, or nil).
    public func waitForVersion(
        _ minVersion: UInt64, on eventLoop: any EventLoop, until deadline: NIODeadline
    ) -> EventLoopFuture<Snapshot?> {
        let promise = eventLoop.makePromise(of: Snapshot?.self)
        let (ready, id) = waitForVersion(minVersion) { promise.succeed($0) }
        if let ready {
            promise.succeed(ready)
            return promise.futureResult
        }
        let timeout = eventLoop.scheduleTask(deadline: deadline) { [self] in
            if cancelWait(id) { promise.succeed(snapshot) }
        }
        promise.futureResult.whenComplete { _ in timeout.cancel() }
        return promise.futureResult
    }

    /// Requests waiting for a newer snapshot right now.
    public var waitingRequests: Int {
        inner.withLock { $0.waiters.count }
    }
}

/// Why the database was checked or loaded (the `kind` label of the load metrics).
public enum SnapshotLoadKind: String, Sendable, CaseIterable {
    /// The load before serving (`SnapshotHolder.load(databasePath:)`, authzd at start).
    case initial
    /// The reloader's first check, catching up with what changed before it ran.
    case startup
    /// A file-watch event (inotify) or one of its follow-up checks.
    case watch
    /// The periodic version poll.
    case poll
    /// A request waiting for a newer snapshot (`min_snapshot_version`).
    case request
    /// A retry after a failure (with backoff).
    case retry
    /// A forced reload: SIGHUP or the Reload call.
    case forced
}

/// How a check or load ended.
public enum SnapshotLoadResult: String, Sendable, CaseIterable {
    /// A snapshot was loaded and installed.
    case success
    /// The probe or the load failed; the snapshot in service (if any) stays.
    case failure
    /// The probe found the database at the version in service: nothing was loaded.
    case unchanged
}

/// How a successful load built its snapshot.
public enum SnapshotLoadMethod: String, Sendable, CaseIterable {
    /// Everything read from the database.
    case full
    /// The snapshot in service plus the rows logged as changed since (`--reload-mode delta`).
    case delta
}

/// Counts of checks and loads by kind and result, and the durations of the latest
/// successful loads.
public struct SnapshotLoadStatistics: Sendable, Equatable {
    private var counts = [UInt64](repeating: 0, count: SnapshotLoadKind.allCases.count * SnapshotLoadResult.allCases.count)
    /// Successful loads by method (`full`, `delta`).
    public private(set) var fullLoads: UInt64 = 0
    public private(set) var deltaLoads: UInt64 = 0
    /// Delta reloads tried that loaded everything instead (the log did not cover the gap,
    /// too many changes, a change the delta does not apply...).
    public private(set) var deltaFallbacks: UInt64 = 0
    /// The method of the latest successful load.
    public private(set) var lastMethod: SnapshotLoadMethod?

    /// Counts the method of a successful load (`fellBack`: a delta was tried first).
    mutating func recordMethod(_ method: SnapshotLoadMethod, fellBack: Bool) {
        switch method {
        case .full: fullLoads += 1
        case .delta: deltaLoads += 1
        }
        if fellBack { deltaFallbacks += 1 }
        lastMethod = method
    }
    /// Successful loads timed so far (numbered 1, 2, …).
    public private(set) var timedLoads: UInt64 = 0
    /// The durations of the latest `recentLimit` timed loads, oldest first.
    public private(set) var recentDurations: [Duration] = []

    public static let recentLimit = 256

    public init() {}

    public func count(_ kind: SnapshotLoadKind, _ result: SnapshotLoadResult) -> UInt64 {
        counts[Self.index(kind, result)]
    }

    /// The durations of the timed loads numbered after `seen` that are still kept.
    public func durations(after seen: UInt64) -> ArraySlice<Duration> {
        let new = timedLoads > seen ? timedLoads - seen : 0
        return recentDurations.suffix(Int(min(new, UInt64(recentDurations.count))))
    }

    mutating func record(_ kind: SnapshotLoadKind, _ result: SnapshotLoadResult, duration: Duration?) {
        counts[Self.index(kind, result)] += 1
        guard let duration else { return }
        timedLoads += 1
        if recentDurations.count == Self.recentLimit { recentDurations.removeFirst() }
        recentDurations.append(duration)
    }

    private static func index(_ kind: SnapshotLoadKind, _ result: SnapshotLoadResult) -> Int {
        let kindIndex = SnapshotLoadKind.allCases.firstIndex(of: kind) ?? 0
        let resultIndex = SnapshotLoadResult.allCases.firstIndex(of: result) ?? 0
        return kindIndex * SnapshotLoadResult.allCases.count + resultIndex
    }
}

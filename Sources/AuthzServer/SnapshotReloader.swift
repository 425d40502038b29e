// Hot reload: one dedicated thread watches the database and swaps snapshots.
//
// Everything that can change the answer ends in the same loop, so reloads coalesce:
//   - a file watch (inotify on the database's directory: the file, its -wal and -journal;
//     and on the directory of every symlink the path passes through, so a swapped link is
//     seen; re-established when a directory on the way is removed, moved or replaced),
//     debounced: a check runs once events have been quiet for `reloadDebounce`, or 8x that
//     after the first event of a continuous burst; then a few follow-up checks (2x, 4x, …
//     the debounce, within a second of the last event) catch a commit whose WAL index was
//     published after its last file write (mmap writes raise no events);
//   - polling: every `pollInterval`, one cheap version query (file systems where inotify is
//     silent: NFS, some container mounts);
//   - explicit requests: `requestCheck()` (a request waiting for a newer version) and
//     `reload(...)` (SIGHUP, the Reload RPC), which loads even when the version is unchanged.
// A check probes the snapshot version (and the file's identity); only a change loads.
// The new snapshot is built on this thread, off the request path, then installed with one
// reference swap. A failure keeps the last good snapshot, is logged once per distinct
// cause, shown in Status, and retried with exponential backoff until it succeeds.
//
// A replaced snapshot is retired, not dropped: this thread keeps it until nothing else
// holds it (connections hold the snapshot in service only while they answer one read
// batch; once the holder points elsewhere no new reference can appear), then releases it
// here, so its memory is freed on this thread and handed back to the system. A build
// waits (bounded) for the retired ones to go: at most the snapshot in service, one
// retiring and the one being built are alive, however fast commits arrive.

public import AuthzEngine
public import AuthzStore
public import Logging
import CEpoll
import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What a reload did.
public struct ReloadOutcome: Sendable {
    /// The snapshot in service after the attempt (the old one if it failed), or nil.
    public var snapshot: Snapshot?
    /// Why the load failed; nil when it succeeded.
    public var error: StoreError?
    /// The version in service before the attempt, or nil.
    public var previousVersion: UInt64?

    public init(snapshot: Snapshot?, error: StoreError?, previousVersion: UInt64?) {
        self.snapshot = snapshot
        self.error = error
        self.previousVersion = previousVersion
    }
}

/// Keeps the `SnapshotHolder` in step with the database. A `Service`: `run()` returns on
/// graceful shutdown or cancellation.
public final class SnapshotReloader: Service, Sendable {
    /// Builds a snapshot from the database at a path (`SnapshotLoader.load` by default;
    /// tests inject faults here). An injected loader turns delta reloads off: every load
    /// goes through it.
    public typealias Loader = @Sendable (String) throws(StoreError) -> Snapshot

    /// Counters, for Status-like introspection and tests.
    public struct Statistics: Sendable, Equatable {
        /// Version probes made.
        public var probes: UInt64 = 0
        /// Snapshot loads attempted (successful or not).
        public var loads: UInt64 = 0
        /// Failed probes and loads.
        public var failures: UInt64 = 0
        /// File-watch events about the database seen.
        public var fileEvents: UInt64 = 0
        /// Whether the file watch covers the database now: its directory and every
        /// symlink on the way are watched. False while the watch is off, broken (the
        /// directory was removed: then only its parent is watched, for it to come back)
        /// or could not be set up.
        public var watching = false
    }

    private struct Shared {
        var checkRequested = false
        var forcedWaiters: [@Sendable (ReloadOutcome) -> Void] = []
        var forceRequested = false
        var stopRequested = false
        var running = false
        var statistics = Statistics()
    }

    public let databasePath: String
    private let snapshots: SnapshotHolder
    private let logger: Logger
    private let loader: Loader
    /// Whether a changed database is first tried as a delta (`--reload-mode delta`, and no
    /// injected loader).
    private let deltaReloads: Bool
    private let deltaMaxChanges: Int
    private let watch: Bool
    private let pollInterval: Duration?
    private let debounce: Duration
    private let initialBackoff: Duration
    private let maxBackoff: Duration
    private let shared = Mutex(Shared())
    private let wakeup: WakeupPipe
    private let started = ReadySignal()

    /// - Parameters:
    ///   - configuration: `databasePath`, `watchDatabase`, `pollInterval`, `reloadDebounce`.
    ///   - snapshots: the holder to keep current.
    ///   - retryBackoff: the first and the longest wait before retrying a failed load.
    ///   - loader: how snapshots are built (nil: `SnapshotLoader.load`, and delta reloads
    ///     as `configuration.reloadMode` says).
    public init(
        configuration: ServerConfiguration,
        snapshots: SnapshotHolder,
        logger: Logger = Logger(label: "authzd.reload"),
        retryBackoff: (initial: Duration, max: Duration) = (.milliseconds(100), .seconds(5)),
        loader: Loader? = nil
    ) {
        self.databasePath = configuration.databasePath
        self.snapshots = snapshots
        self.logger = logger
        if let loader {
            self.loader = loader
        } else {
            self.loader = { path throws(StoreError) in try SnapshotLoader.load(path: path) }
        }
        self.deltaReloads = loader == nil && configuration.reloadMode == .delta
        self.deltaMaxChanges = configuration.deltaMaxChanges
        self.watch = configuration.watchDatabase
        self.pollInterval = configuration.pollInterval
        self.debounce = configuration.reloadDebounce
        self.initialBackoff = retryBackoff.initial
        self.maxBackoff = max(retryBackoff.max, retryBackoff.initial)
        self.wakeup = WakeupPipe()
    }

    /// Returns once the loop runs (the file watch, if any, is in place).
    public func waitUntilRunning() async throws {
        try await started.wait()
    }

    public var statistics: Statistics {
        shared.withLock { $0.statistics }
    }

    /// Asks for a version check soon (coalesced with any other pending check): reloads if
    /// the database changed. Never blocks.
    public func requestCheck() {
        let first = shared.withLock { shared in
            defer { shared.checkRequested = true }
            return !shared.checkRequested
        }
        if first { wakeup.signal() }
    }

    /// Loads the database now, even if its version did not change, and calls `completion`
    /// (on the reloader's thread) with the outcome. Requests made while a load runs are
    /// served by the next load, so each outcome reflects the database as it was after the
    /// request. If the reloader is not running, completes at once with an error.
    public func reload(completion: @escaping @Sendable (ReloadOutcome) -> Void) {
        let accepted = shared.withLock { shared -> Bool in
            guard shared.running, !shared.stopRequested else { return false }
            shared.forceRequested = true
            shared.forcedWaiters.append(completion)
            return true
        }
        guard accepted else {
            let snapshot = snapshots.snapshot
            completion(
                ReloadOutcome(
                    snapshot: snapshot,
                    error: StoreError(code: .io, message: "the reloader is not running (the server is starting or stopping)"),
                    previousVersion: snapshot?.version))
            return
        }
        wakeup.signal()
    }

    /// Asks for a load even if the version did not change (SIGHUP), without waiting for
    /// it. Requests made while a load is queued or running collapse into one more load;
    /// the reloader logs its outcome. Accepted before the reloader runs too (its first
    /// turn serves it). Returns false when a forced load was already queued (this request
    /// joined it) or the reloader is stopping.
    @discardableResult
    public func requestReload() -> Bool {
        let queued = shared.withLock { shared -> Bool in
            guard !shared.stopRequested, !shared.forceRequested else { return false }
            shared.forceRequested = true
            return true
        }
        if queued { wakeup.signal() }
        return queued
    }

    /// Loads the database now (see `reload(completion:)`) and returns the outcome.
    public func reload() async -> ReloadOutcome {
        await withCheckedContinuation { continuation in
            reload { continuation.resume(returning: $0) }
        }
    }

    // MARK: - Service

    public func run() async throws {
        let start = shared.withLock { shared -> Bool in
            guard !shared.running, !shared.stopRequested else { return false }
            shared.running = true
            return true
        }
        guard start else {
            started.fail(ServerError(.bind, "SnapshotReloader.run() was called twice"))
            return
        }
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                _ = try? await pool.runIfActive { self.loop() }
            } onGracefulShutdown: {
                self.stop()
            }
        } onCancel: {
            self.stop()
        }
        try? await pool.shutdownGracefully()
        let waiters = shared.withLock { shared in
            shared.running = false
            defer { shared.forcedWaiters = [] }
            return shared.forcedWaiters
        }
        if !waiters.isEmpty {
            let snapshot = snapshots.snapshot
            let outcome = ReloadOutcome(
                snapshot: snapshot, error: StoreError(code: .io, message: "the server is shutting down"),
                previousVersion: snapshot?.version)
            for waiter in waiters { waiter(outcome) }
        }
    }

    private func stop() {
        shared.withLock { $0.stopRequested = true }
        wakeup.signal()
    }

    // MARK: - The loop (on the reloader's own thread)

    private func loop() {
        // Builds compete with the event loops for CPU only when both want it; then the
        // requests win. (On Linux the nice value is per thread: this one alone.)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, Self.threadNiceness)
        var state = LoopState(now: .now, pollInterval: pollInterval, backoff: initialBackoff)
        let watcher = watch ? startWatching(&state) : nil
        defer { watcher?.close() }
        started.succeed()
        state.servedFile = snapshots.snapshot == nil ? nil : DatabaseFile.identity(databasePath)
        if let initial = snapshots.initialSnapshotFile, initial.snapshot === snapshots.snapshot {
            state.deltaBase = initial  // the snapshot loaded before serving, and its file
        }
        // Catch up at once with anything that happened before the loop ran.
        state.checkDue = true

        while true {
            let now = ContinuousClock.now
            if !state.checkDue {
                let timeout = state.nextWake(now: now).map { now.duration(to: $0) }
                let ready = poll(wakeup: wakeup.readEnd, watcher: watcher?.descriptor, timeout: timeout)
                wakeup.drain()
                if ready.watcher, let watcher {
                    let events = watcher.drainEvents()
                    if events.relevant > 0 {
                        shared.withLock { $0.statistics.fileEvents += 1 }
                        state.fileEvent(now: ContinuousClock.now, debounce: debounce)
                    }
                    if events.rewatch { rewatch(watcher, &state, broken: events.broken) }
                }
            }
            if let watcher, let retry = state.watchRetryAt, ContinuousClock.now >= retry {
                rewatch(watcher, &state, broken: nil)
            }
            let (stop, forced, check) = shared.withLock { shared in
                let forced = shared.forceRequested ? shared.forcedWaiters : nil
                shared.forceRequested = false
                shared.forcedWaiters = []
                defer { shared.checkRequested = false }
                return (shared.stopRequested, forced, shared.checkRequested)
            }
            if stop {
                if let forced { shared.withLock { $0.forcedWaiters = forced + $0.forcedWaiters } }
                return
            }
            let moment = ContinuousClock.now
            // Why a check is due, for the metrics: the first reason in this order.
            var kind: SnapshotLoadKind?
            if let retry = state.retryAt, moment >= retry { kind = .retry }
            if state.eventCheckDue(now: moment, debounce: debounce) { kind = kind ?? .watch }
            if check { kind = kind ?? .request }
            if let poll = state.nextPoll, moment >= poll { kind = kind ?? .poll }
            if state.checkDue { kind = kind ?? .startup }
            releaseRetired(&state)

            if let forced {
                // Every forced request so far (Reload calls, SIGHUPs) is served by this
                // one load; those arriving meanwhile wait for the next.
                let outcome = attempt(&state, kind: .forced)
                for waiter in forced { waiter(outcome) }
            } else if let kind {
                _ = attempt(&state, kind: kind)
            }
            state.checkDue = false
            if forced != nil || kind != nil, let pollInterval {
                state.nextPoll = ContinuousClock.now + pollInterval
            }
        }
    }

    /// One check (or, `forced`, one unconditional load).
    private func attempt(_ state: inout LoopState, kind: SnapshotLoadKind) -> ReloadOutcome {
        let forced = kind == .forced
        let served = snapshots.snapshot
        let file = DatabaseFile.identity(databasePath)
        if !forced {
            shared.withLock { $0.statistics.probes += 1 }
            let version: UInt64
            do throws(StoreError) {
                version = try state.probe(databasePath).current()
            } catch {
                snapshots.recordAttempt(kind, .failure)
                return failed(&state, error, served: served)
            }
            logger.debug(
                "checked the snapshot version",
                metadata: ["db-version": "\(version)", "served-version": "\(served.map { String($0.version) } ?? "none")"])
            if let served, served.version == version, file != nil, file == state.servedFile {
                if state.retryAt != nil {
                    snapshots.recordUpToDate()
                    logger.notice(
                        "the database is readable again; the snapshot in service is current",
                        metadata: ["snapshot-version": "\(version)"])
                }
                state.healthy(initialBackoff)
                snapshots.recordAttempt(kind, .unchanged)
                return ReloadOutcome(snapshot: served, error: nil, previousVersion: served.version)
            }
        }
        shared.withLock { $0.statistics.loads += 1 }
        waitForRetired(&state)
        let started = ContinuousClock.now
        let startedCPU = Self.threadCPUNanoseconds()
        // A delta needs the snapshot in service to be the one this loop installed last (so
        // its file is known) and not a forced load (SIGHUP, Reload: everything is read).
        var delta: (snapshot: Snapshot, changes: Int)?
        var fallback: String?
        if deltaReloads, !forced, let served, let base = state.deltaBase, base.snapshot === served {
            do throws(StoreError) {
                switch try state.probe(databasePath).loadDelta(
                    base: served, baseFile: base.file, maxChanges: deltaMaxChanges)
                {
                case .applied(let snapshot, let changes): delta = (snapshot, changes)
                case .needsFull(let reason): fallback = reason
                }
            } catch {
                snapshots.recordAttempt(kind, .failure)
                return failed(&state, error, served: served, forced: forced)
            }
        }
        let snapshot: Snapshot
        if let delta {
            snapshot = delta.snapshot
        } else {
            do throws(StoreError) {
                snapshot = try loader(databasePath)
            } catch {
                snapshots.recordAttempt(kind, .failure)
                return failed(&state, error, served: served, forced: forced)
            }
        }
        let elapsed = ContinuousClock.now - started
        let cpu = Self.threadCPUNanoseconds() &- startedCPU
        let previous = snapshots.install(snapshot)
        snapshots.recordAttempt(kind, .success, duration: elapsed)
        snapshots.recordMethod(delta == nil ? .full : .delta, fellBack: fallback != nil)
        state.servedFile = file
        state.deltaBase = file.map { (snapshot, DatabaseFileIdentity(device: $0.device, inode: $0.inode)) }
        let wasFailing = state.retryAt != nil
        state.healthy(initialBackoff)
        if let previous { state.retired.append(previous) }
        var metadata: Logger.Metadata = [
            "snapshot-version": "\(snapshot.version)",
            "previous-version": "\(previous.map { String($0.version) } ?? "none")",
            "load-ms": "\(elapsed.milliseconds())",
            "load-us": "\(elapsed.wholeNanoseconds / 1000)",
            "load-cpu-us": "\(cpu / 1000)",
            "method": "\(delta == nil ? "full" : "delta")",
        ]
        if let delta { metadata["changes"] = "\(delta.changes)" }
        if let fallback { metadata["full-because"] = "\(fallback)" }
        if forced { metadata["forced"] = "true" }
        if let previous, snapshot.version < previous.version {
            logger.notice("loaded an OLDER snapshot version: the database was replaced", metadata: metadata)
        } else if wasFailing {
            logger.notice("reloaded the workspace snapshot after load failures", metadata: metadata)
        } else {
            logger.info("reloaded the workspace snapshot", metadata: metadata)
        }
        return ReloadOutcome(snapshot: snapshot, error: nil, previousVersion: previous?.version)
    }

    private func failed(
        _ state: inout LoopState, _ error: StoreError, served: Snapshot?, forced: Bool = false
    ) -> ReloadOutcome {
        shared.withLock { $0.statistics.failures += 1 }
        state.probeState = nil  // reopen next time
        let delay = state.backoff
        state.retryAt = ContinuousClock.now + delay
        state.backoff = min(state.backoff * 2, maxBackoff)
        let serving = served.map { "still serving version \($0.version)" } ?? "no snapshot in service"
        if snapshots.recordLoadFailure(error.description) {
            state.loggedFailureCode = error.code.description
            logger.warning(
                "cannot reload the workspace snapshot; \(serving); retrying with backoff: \(error)",
                metadata: ["db": "\(databasePath)"])
        } else if state.loggedFailureCode != error.code.description {
            // Same streak, another kind of failure: worth one more line; repeats are not.
            state.loggedFailureCode = error.code.description
            logger.warning("reloading still fails, now with another error; \(serving): \(error)", metadata: ["db": "\(databasePath)"])
        } else if forced {
            // Someone asked for this load (SIGHUP, Reload): say how it went. Forced
            // requests coalesce, so this is at most one line per load.
            logger.warning("the requested reload failed; \(serving): \(error)", metadata: ["db": "\(databasePath)"])
        }
        return ReloadOutcome(snapshot: served, error: error, previousVersion: served?.version)
    }

    // MARK: - Retiring replaced snapshots

    /// Releases every retired snapshot nothing else holds any more (on this thread), then
    /// returns the freed memory to the system.
    private func releaseRetired(_ state: inout LoopState) {
        guard !state.retired.isEmpty else { return }
        var released = 0
        var index = state.retired.count - 1
        while index >= 0 {
            // Only the list holds it, and nothing can take a new reference: the holder
            // serves another snapshot. Removing it frees it, here.
            if isKnownUniquelyReferenced(&state.retired[index]) {
                state.retired.remove(at: index)
                released += 1
            }
            index -= 1
        }
        if released > 0 {
            // Large tables are mmap'd and unmapped by their deinit; the rest went back to
            // malloc, which keeps it unless asked.
            _ = authz_malloc_trim()
        }
    }

    /// Before a build: waits until the retired snapshots are released, so no more than
    /// three are ever alive; gives up after `retireWaitLimit` (a connection holding one
    /// that long is a bug elsewhere) and builds anyway.
    private func waitForRetired(_ state: inout LoopState) {
        releaseRetired(&state)
        guard !state.retired.isEmpty else { return }
        let deadline = ContinuousClock.now + Self.retireWaitLimit
        while !state.retired.isEmpty {
            guard ContinuousClock.now < deadline else {
                logger.debug(
                    "building a snapshot while replaced ones are still in use",
                    metadata: ["still-in-use": "\(state.retired.count)"])
                return
            }
            usleep(UInt32(Self.retireCheckInterval.milliseconds() * 1000))
            releaseRetired(&state)
        }
    }

    /// How long a build waits for replaced snapshots to be released.
    static let retireWaitLimit: Duration = .seconds(1)
    /// How often retired snapshots are checked while there are any.
    static let retireCheckInterval: Duration = .milliseconds(2)

    // MARK: - The file watch

    private func startWatching(_ state: inout LoopState) -> DatabaseWatcher? {
        let watcher: DatabaseWatcher
        do {
            watcher = try DatabaseWatcher(databasePath: databasePath)
        } catch {
            logger.warning(
                "cannot watch the database for changes (\(error)); relying on \(watchFallback)",
                metadata: ["db": "\(databasePath)"])
            return nil
        }
        state.watchHealthy = true
        rewatch(watcher, &state, broken: nil)
        return watcher
    }

    /// (Re)establishes the watch after the path's directories or links changed, or it
    /// broke; logs a warning when it breaks and a notice when it is back, keeps
    /// `Statistics.watching` true to fact, retries with backoff while it falls short, and
    /// has the database checked (anything may have changed meanwhile).
    private func rewatch(_ watcher: DatabaseWatcher, _ state: inout LoopState, broken: String?) {
        if let broken, state.watchHealthy {
            logger.warning(
                "the file watch on the database broke (\(broken)); re-establishing it",
                metadata: ["db": "\(databasePath)"])
            state.watchHealthy = false
        }
        let complete = watcher.establish()
        shared.withLock { $0.statistics.watching = complete }
        let now = ContinuousClock.now
        if complete {
            state.watchRetryAt = nil
            state.watchBackoff = Self.watchRetryBackoff.initial
            if !state.watchHealthy {
                logger.notice(
                    "the file watch on the database is back", metadata: ["watching": "\(watcher.watchedDirectories)"])
                state.watchHealthy = true
            } else {
                logger.debug("watching the database", metadata: ["watching": "\(watcher.watchedDirectories)"])
            }
        } else {
            let problem = watcher.problem ?? "unknown"
            if state.watchHealthy {
                logger.warning(
                    "the file watch on the database is incomplete (\(problem)); relying on \(watchFallback) until it is back",
                    metadata: ["db": "\(databasePath)"])
                state.watchHealthy = false
            } else {
                logger.debug("the file watch on the database is still incomplete: \(problem)")
            }
            state.watchRetryAt = now + state.watchBackoff
            state.watchBackoff = min(state.watchBackoff * 2, Self.watchRetryBackoff.max)
        }
        state.fileEvent(now: now, debounce: debounce)
    }

    private var watchFallback: String {
        pollInterval.map { "polling every \($0)" } ?? "no polling either (--poll-interval 0)"
    }

    /// How soon, and at most how rarely, an incomplete watch is tried again (besides the
    /// watch on the nearest existing directory, which reports the missing one's return).
    static let watchRetryBackoff: (initial: Duration, max: Duration) = (.milliseconds(100), .seconds(5))

    private func poll(wakeup: Int32, watcher: Int32?, timeout: Duration?) -> (wakeup: Bool, watcher: Bool) {
        var descriptors = [pollfd(fd: wakeup, events: Int16(POLLIN), revents: 0)]
        if let watcher { descriptors.append(pollfd(fd: watcher, events: Int16(POLLIN), revents: 0)) }
        let milliseconds: Int32 =
            if let timeout {
                Int32(clamping: max(0, timeout.milliseconds(roundingUp: true)))
            } else {
                -1
            }
        let count = Glibc.poll(&descriptors, nfds_t(descriptors.count), milliseconds)
        guard count > 0 else { return (false, false) }
        return (descriptors[0].revents != 0, descriptors.count > 1 && descriptors[1].revents != 0)
    }

    /// CPU time consumed by the calling thread so far.
    static func threadCPUNanoseconds() -> UInt64 {
        var time = timespec()
        guard clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time) == 0 else { return 0 }
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }

    /// The reloader thread's nice value (0 = normal; 19 = lowest).
    static let threadNiceness: Int32 = 10

}

/// The loop's own state: touched only by the reloader thread.
private struct LoopState {
    var checkDue = false
    /// The first and last file events of the current burst.
    var burstStart: ContinuousClock.Instant?
    var lastEvent: ContinuousClock.Instant?
    /// When the next event-driven check (or follow-up check) is due.
    var eventCheckAt: ContinuousClock.Instant?
    var followUps = 0
    var nextPoll: ContinuousClock.Instant?
    /// Set while failing: when to try again.
    var retryAt: ContinuousClock.Instant?
    var backoff: Duration
    /// The database file the snapshot in service came from.
    var servedFile: DatabaseFile?
    /// The snapshot this loop installed last and the file it came from (identified before
    /// the load began): what a delta reload starts from.
    var deltaBase: (snapshot: Snapshot, file: DatabaseFileIdentity)?
    /// Replaced snapshots, released by this thread once nothing else holds them (so the
    /// last reference never drops, freeing a whole snapshot, on an event loop).
    var retired: [Snapshot] = []
    var probeState: VersionProbe?
    /// The kind of failure last logged in the current failure streak.
    var loggedFailureCode: String?
    /// Whether the file watch was complete when last logged about (false: a warning said
    /// it broke, and a notice will say when it is back).
    var watchHealthy = false
    /// Set while the watch is incomplete: when to try again, and the wait after that.
    var watchRetryAt: ContinuousClock.Instant?
    var watchBackoff: Duration = SnapshotReloader.watchRetryBackoff.initial

    init(now: ContinuousClock.Instant, pollInterval: Duration?, backoff: Duration) {
        self.backoff = backoff
        self.nextPoll = pollInterval.map { now + $0 }
    }

    mutating func probe(_ path: String) -> VersionProbe {
        if let probeState { return probeState }
        let probe = VersionProbe(path: path)
        probeState = probe
        return probe
    }

    mutating func healthy(_ initialBackoff: Duration) {
        retryAt = nil
        loggedFailureCode = nil
        backoff = initialBackoff
    }

    /// A file event: check once events have been quiet for `debounce`, but no later than
    /// 8 debounces after the burst began.
    mutating func fileEvent(now: ContinuousClock.Instant, debounce: Duration) {
        lastEvent = now
        let start = burstStart ?? now
        burstStart = start
        followUps = 0
        eventCheckAt = min(now + debounce, start + debounce * 8)
    }

    /// Whether an event-driven check is due now; if so, schedules the next follow-up.
    mutating func eventCheckDue(now: ContinuousClock.Instant, debounce: Duration) -> Bool {
        guard let at = eventCheckAt, now >= at else { return false }
        burstStart = nil
        followUps += 1
        let step = max(debounce, .milliseconds(1)) * (1 << min(followUps, 12))
        if let lastEvent, now + step - lastEvent <= Self.settleWindow {
            eventCheckAt = now + step
        } else {
            eventCheckAt = nil
        }
        return true
    }

    /// Follow-up checks stop this long after the last file event.
    static let settleWindow: Duration = .seconds(1)

    func nextWake(now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        let retiredCheck = retired.isEmpty ? nil : now + SnapshotReloader.retireCheckInterval
        return [eventCheckAt, nextPoll, retryAt, retiredCheck, watchRetryAt].compactMap { $0 }.min()
    }
}

/// A database file's identity (device and inode, following symlinks): a replaced file is
/// another identity even when its snapshot version happens to be the same.
struct DatabaseFile: Equatable {
    var device: UInt64
    var inode: UInt64

    static func identity(_ path: String) -> DatabaseFile? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return DatabaseFile(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }
}

/// inotify on what the database path passes through: the database's directory (its name,
/// `-wal` and `-journal`) and the directory holding each symlink met while resolving the
/// path (the link's name), so that replacing a link (a Kubernetes volume's `..data` swap)
/// is an event. While a directory on the way is missing, the nearest existing one is
/// watched for it. `establish()` (re)builds the set after any change to the chain.
final class DatabaseWatcher {
    let descriptor: Int32
    /// The database path, absolute.
    let path: String
    /// What a watched name means: the database's own files (check), or a symlink or
    /// missing directory on the way (the chain may have changed: rebuild, then check).
    enum Role { case file, link }
    private var watches: [Int32: (directory: String, names: [[UInt8]: Role])] = [:]
    /// Whether the last `establish()` watched the database's directory and every link.
    private(set) var complete = false
    /// Why the last `establish()` fell short.
    private(set) var problem: String?
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static let mask: UInt32 = UInt32(
        IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_ATTRIB
            | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

    /// An inotify instance watching nothing yet: call `establish()`.
    init(databasePath: String) throws(Failure) {
        if databasePath.hasPrefix("/") {
            path = databasePath
        } else {
            var cwd = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            guard getcwd(&cwd, cwd.count) != nil else {
                throw Failure(description: "getcwd: \(SocketFile.errorText(errno))")
            }
            let length = cwd.firstIndex(of: 0) ?? cwd.count
            path = String(decoding: cwd[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + databasePath
        }
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { throw Failure(description: "inotify_init1: \(SocketFile.errorText(errno))") }
        descriptor = fd
    }

    var watchedDirectories: [String] { watches.values.map(\.directory).sorted() }

    /// Resolves the path again and watches what it passes through now (dropping watches
    /// no longer on the way); returns whether the watch is complete.
    @discardableResult
    func establish() -> Bool {
        let plan = WatchPlan(resolving: path)
        var next: [Int32: (directory: String, names: [[UInt8]: Role])] = [:]
        var failure: String?
        for (directory, names) in plan.directories {
            let wd = inotify_add_watch(descriptor, directory, Self.mask)
            guard wd >= 0 else {
                failure = failure ?? "cannot watch \(directory): \(SocketFile.errorText(errno))"
                continue
            }
            // Two paths to one directory share a watch.
            next[wd, default: (directory, [:])].names.merge(names) { $0 == .link || $1 == .link ? .link : .file }
        }
        for wd in watches.keys where next[wd] == nil {
            _ = inotify_rm_watch(descriptor, wd)
        }
        watches = next
        problem = failure ?? plan.missing.map { "\($0) does not exist" }
        complete = problem == nil
        return complete
    }

    /// What a batch of events means.
    struct Events {
        /// Events about the database's files, links or directories.
        var relevant = 0
        /// The chain may have changed (a link or a missing directory, a watched directory
        /// gone or moved, lost events): call `establish()`.
        var rewatch = false
        /// Set when a watched directory went away: why.
        var broken: String?
    }

    /// Reads every pending event.
    func drainEvents() -> Events {
        var events = Events()
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { return events }
            buffer.withUnsafeBytes { bytes in
                var offset = 0
                let header = MemoryLayout<inotify_event>.size
                while offset + header <= count {
                    let event = bytes.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    let nameLength = Int(event.len)
                    let nameStart = offset + header
                    offset += header + nameLength
                    classify(event, name: UnsafeRawBufferPointer(rebasing: bytes[nameStart..<min(offset, count)]), into: &events)
                }
            }
        }
    }

    private func classify(_ event: inotify_event, name: UnsafeRawBufferPointer, into events: inout Events) {
        let mask = event.mask
        if mask & UInt32(IN_Q_OVERFLOW) != 0 {
            // Events were lost: anything may have changed.
            events.relevant += 1
            events.rewatch = true
            return
        }
        guard let watch = watches[event.wd] else { return }  // a watch dropped earlier
        if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED) != 0 {
            if mask & UInt32(IN_IGNORED) != 0 { watches[event.wd] = nil }  // the kernel removed it
            events.relevant += 1
            events.rewatch = true
            let what =
                mask & UInt32(IN_MOVE_SELF) != 0 ? "was moved"
                : mask & UInt32(IN_UNMOUNT) != 0 ? "was unmounted" : "was removed"
            events.broken = events.broken ?? "\(watch.directory) \(what)"
            return
        }
        let length = name.firstIndex(of: 0) ?? name.count
        guard length > 0 else {
            events.relevant += 1  // the directory itself changed
            return
        }
        switch watch.names[Array(name[..<length])] {
        case .file?:
            events.relevant += 1
        case .link?:
            events.relevant += 1
            events.rewatch = true
        case nil:
            break
        }
    }

    func close() {
        Glibc.close(descriptor)
    }
}

/// The directories to watch for a database path, and the names in each that matter: found
/// by resolving the path one component at a time, as the kernel does.
struct WatchPlan {
    /// Directory → names, in the order met.
    private(set) var directories: [(String, [[UInt8]: DatabaseWatcher.Role])] = []
    /// A directory on the way that does not exist (its parent is watched for it).
    private(set) var missing: String?

    /// Links followed before giving up (the kernel's limit is 40).
    static let maxLinks = 40

    init(resolving path: String) {
        var pending = Self.components(path)
        var resolved = ""  // "" is the root
        var links = 0
        while !pending.isEmpty {
            let component = pending.removeFirst()
            if component == "." { continue }
            if component == ".." {
                resolved = Self.parent(resolved)
                continue
            }
            let directory = resolved.isEmpty ? "/" : resolved
            let candidate = resolved + "/" + component
            let isLast = pending.isEmpty
            var info = stat()
            guard lstat(candidate, &info) == 0 else {
                // Missing (or unreadable): watch the nearest existing directory for it.
                if isLast {
                    add(directory, databaseNames(component), role: .file)
                } else {
                    add(directory, [component], role: .link)
                    missing = candidate
                }
                return
            }
            if info.st_mode & S_IFMT == S_IFLNK, links < Self.maxLinks, let target = Self.readLink(candidate) {
                links += 1
                add(directory, [component], role: .link)
                // SQLite names the -wal after the path it opened (older builds: the link).
                if isLast { add(directory, databaseNames(component).dropFirst(), role: .file) }
                if target.hasPrefix("/") { resolved = "" }
                pending = Self.components(target) + pending
                continue
            }
            if isLast {
                add(directory, databaseNames(component), role: .file)
                return
            }
            resolved = candidate
        }
    }

    private func databaseNames(_ name: String) -> [String] {
        [name, name + "-wal", name + "-journal"]
    }

    private mutating func add(_ directory: String, _ names: some Sequence<String>, role: DatabaseWatcher.Role) {
        let index: Int
        if let existing = directories.firstIndex(where: { $0.0 == directory }) {
            index = existing
        } else {
            directories.append((directory, [:]))
            index = directories.count - 1
        }
        for name in names {
            let key = Array(name.utf8)
            if directories[index].1[key] != .link { directories[index].1[key] = role }  // a link role wins
        }
    }

    private static func components(_ path: String) -> [String] {
        path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    }

    private static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A self-pipe: any thread wakes the reloader's poll().
final class WakeupPipe: Sendable {
    let readEnd: Int32
    let writeEnd: Int32

    init() {
        var ends: [Int32] = [-1, -1]
        precondition(pipe(&ends) == 0, "pipe(): \(SocketFile.errorText(errno))")
        for fd in ends {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readEnd = ends[0]
        writeEnd = ends[1]
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    func signal() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)  // a full pipe already means "wake up"
    }

    func drain() {
        var bytes = [UInt8](repeating: 0, count: 64)
        while read(readEnd, &bytes, bytes.count) > 0 {}
    }
}

// Hot reload: one dedicated thread watches the database and swaps snapshots.
//
// Everything that can change the answer ends in the same loop, so reloads coalesce:
//   - a file watch (inotify on the database's directory: the file, its -wal and -journal),
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
    /// tests inject faults here).
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
        /// Whether the file watch is active.
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
    ///   - loader: how snapshots are built.
    public init(
        configuration: ServerConfiguration,
        snapshots: SnapshotHolder,
        logger: Logger = Logger(label: "authzd.reload"),
        retryBackoff: (initial: Duration, max: Duration) = (.milliseconds(100), .seconds(5)),
        loader: @escaping Loader = { path throws(StoreError) in try SnapshotLoader.load(path: path) }
    ) {
        self.databasePath = configuration.databasePath
        self.snapshots = snapshots
        self.logger = logger
        self.loader = loader
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
        let watcher = watch ? startWatching() : nil
        defer { watcher?.close() }
        started.succeed()
        state.servedFile = snapshots.snapshot == nil ? nil : DatabaseFile.identity(databasePath)
        // Catch up at once with anything that happened before the loop ran.
        state.checkDue = true

        while true {
            let now = ContinuousClock.now
            if !state.checkDue {
                let timeout = state.nextWake(now: now).map { now.duration(to: $0) }
                let ready = poll(wakeup: wakeup.readEnd, watcher: watcher?.descriptor, timeout: timeout)
                wakeup.drain()
                if ready.watcher, let watcher, watcher.drainRelevantEvents() > 0 {
                    shared.withLock { $0.statistics.fileEvents += 1 }
                    state.fileEvent(now: ContinuousClock.now, debounce: debounce)
                }
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
            var due = state.checkDue || check
            if state.eventCheckDue(now: moment, debounce: debounce) { due = true }
            if let poll = state.nextPoll, moment >= poll { due = true }
            if let retry = state.retryAt, moment >= retry { due = true }
            releaseRetired(&state)

            if let forced {
                // Every forced request so far (Reload calls, SIGHUPs) is served by this
                // one load; those arriving meanwhile wait for the next.
                let outcome = attempt(&state, forced: true)
                for waiter in forced { waiter(outcome) }
            } else if due {
                _ = attempt(&state, forced: false)
            }
            state.checkDue = false
            if forced != nil || due, let pollInterval {
                state.nextPoll = ContinuousClock.now + pollInterval
            }
        }
    }

    /// One check (or, `forced`, one unconditional load).
    private func attempt(_ state: inout LoopState, forced: Bool) -> ReloadOutcome {
        let served = snapshots.snapshot
        let file = DatabaseFile.identity(databasePath)
        if !forced {
            shared.withLock { $0.statistics.probes += 1 }
            let version: UInt64
            do throws(StoreError) {
                version = try state.probe(databasePath).current()
            } catch {
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
                return ReloadOutcome(snapshot: served, error: nil, previousVersion: served.version)
            }
        }
        shared.withLock { $0.statistics.loads += 1 }
        waitForRetired(&state)
        let started = ContinuousClock.now
        let snapshot: Snapshot
        do throws(StoreError) {
            snapshot = try loader(databasePath)
        } catch {
            return failed(&state, error, served: served, forced: forced)
        }
        let elapsed = ContinuousClock.now - started
        let previous = snapshots.install(snapshot)
        state.servedFile = file
        let wasFailing = state.retryAt != nil
        state.healthy(initialBackoff)
        if let previous { state.retired.append(previous) }
        var metadata: Logger.Metadata = [
            "snapshot-version": "\(snapshot.version)",
            "previous-version": "\(previous.map { String($0.version) } ?? "none")",
            "load-ms": "\(elapsed.milliseconds())",
        ]
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

    private func startWatching() -> DatabaseWatcher? {
        do {
            let watcher = try DatabaseWatcher(databasePath: databasePath)
            shared.withLock { $0.statistics.watching = true }
            return watcher
        } catch {
            let fallback = pollInterval.map { "polling every \($0)" } ?? "no polling either (--poll-interval 0)"
            logger.warning(
                "cannot watch the database directory for changes (\(error)); relying on \(fallback)",
                metadata: ["db": "\(databasePath)"])
            return nil
        }
    }

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
    /// Replaced snapshots, released by this thread once nothing else holds them (so the
    /// last reference never drops, freeing a whole snapshot, on an event loop).
    var retired: [Snapshot] = []
    var probeState: VersionProbe?
    /// The kind of failure last logged in the current failure streak.
    var loggedFailureCode: String?

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
        return [eventCheckAt, nextPoll, retryAt, retiredCheck].compactMap { $0 }.min()
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

/// inotify on the database's directory, filtered to the database, its -wal and -journal.
final class DatabaseWatcher {
    let descriptor: Int32
    private let names: Set<[UInt8]>
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    init(databasePath: String) throws(Failure) {
        let directory: String
        let base: String
        if let slash = databasePath.lastIndex(of: "/") {
            let head = String(databasePath[..<slash])
            directory = head.isEmpty ? "/" : head
            base = String(databasePath[databasePath.index(after: slash)...])
        } else {
            directory = "."
            base = databasePath
        }
        names = [Array(base.utf8), Array((base + "-wal").utf8), Array((base + "-journal").utf8)]
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { throw Failure(description: "inotify_init1: \(SocketFile.errorText(errno))") }
        let mask =
            IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_ATTRIB
            | IN_DELETE_SELF | IN_MOVE_SELF
        guard inotify_add_watch(fd, directory, UInt32(mask)) >= 0 else {
            let code = errno
            Glibc.close(fd)
            throw Failure(description: "inotify_add_watch(\(directory)): \(SocketFile.errorText(code))")
        }
        descriptor = fd
    }

    /// Reads every pending event; returns how many concern the database.
    func drainRelevantEvents() -> Int {
        var relevant = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { return relevant }
            buffer.withUnsafeBytes { bytes in
                var offset = 0
                let header = MemoryLayout<inotify_event>.size
                while offset + header <= count {
                    let event = bytes.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    let nameLength = Int(event.len)
                    if event.mask & UInt32(IN_Q_OVERFLOW) != 0 || nameLength == 0 {
                        relevant += 1  // an overflow, or the directory itself: check anyway
                    } else {
                        let start = offset + header
                        var end = start
                        while end < start + nameLength, bytes[end] != 0 { end += 1 }
                        if names.contains(Array(bytes[start..<end])) { relevant += 1 }
                    }
                    offset += header + nameLength
                }
            }
        }
    }

    func close() {
        Glibc.close(descriptor)
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

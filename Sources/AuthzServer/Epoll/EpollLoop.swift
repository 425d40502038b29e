// One epoll loop and the connections it owns: waits for events, runs tasks other threads
// hand it, and ticks its connections' timers.

import CEpoll
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One epoll loop. Everything but `execute` and the atomics is touched only by the loop's
/// own thread.
final class EpollLoop: @unchecked Sendable {
    let index: Int
    let context: ServerContext
    let epoll: Int32
    private let wakeup = WakeupPipe()
    private let tasks = Mutex(Tasks())
    let connectionCount = Atomic<Int>(0)

    private struct Tasks {
        var pending: [@Sendable (EpollLoop) -> Void] = []
        /// The loop has exited: nothing queued now would ever run.
        var stopped = false
    }

    // Loop-confined state, with no overlapping accesses: no dynamic exclusivity checks
    // (Package.swift).
    @exclusivity(unchecked) private var connections: [Int32: EpollConnection] = [:]
    @exclusivity(unchecked) private var acceptor: EpollAcceptor?
    @exclusivity(unchecked) private var stopping = false
    @exclusivity(unchecked) private var draining = false
    /// The loop's clock, read once per wake-up.
    @exclusivity(unchecked) private(set) var now = ContinuousClock.now
    @exclusivity(unchecked) private var nextTick = ContinuousClock.now
    /// The hot path's scratch (its arena is reused for every request on this loop).
    let fastPath = FastPathScratch()
    /// This loop's metrics shard (nil without metrics).
    let stats: RequestStats?
    /// This loop's decision log ring (nil without a decision log).
    let decisions: DecisionRecorder?

    static let wakeupKey = UInt64.max
    static let listenerKey = UInt64.max - 1

    init(index: Int, context: ServerContext) throws(ServerError) {
        self.index = index
        self.context = context
        stats = context.metrics?.makeShard()
        decisions = context.decisions.map { DecisionRecorder(log: $0, ring: $0.makeRing()) }
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw ServerError(.listener, "epoll_create1: \(SocketFile.errorText(errno))") }
        register(wakeup.readEnd, key: Self.wakeupKey, events: EPOLLIN.rawValue)
    }

    deinit {
        close(epoll)
    }

    /// Runs `task` on this loop's thread soon (from any thread). Returns false, without
    /// running it, when the loop has stopped.
    @discardableResult
    func execute(_ task: @escaping @Sendable (EpollLoop) -> Void) -> Bool {
        let accepted = tasks.withLock { tasks -> Bool in
            guard !tasks.stopped else { return false }
            tasks.pending.append(task)
            return true
        }
        if accepted { wakeup.signal() }
        return accepted
    }

    func adoptListener(_ acceptor: EpollAcceptor) {
        self.acceptor = acceptor
        register(acceptor.listener, key: Self.listenerKey, events: EPOLLIN.rawValue)
    }

    private func register(_ fd: Int32, key: UInt64, events: UInt32) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = key
        _ = epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event)
    }

    func modify(_ fd: Int32, key: UInt64, events: UInt32) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = key
        _ = epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &event)
    }

    // MARK: The loop

    func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        while true {
            let timeout: Int32
            if connections.isEmpty && !stopping && acceptor?.pausedUntil == nil {
                timeout = -1
            } else {
                let wait = ContinuousClock.now.duration(to: nextTick)
                timeout = Int32(clamping: max(0, wait.milliseconds(roundingUp: true)))
            }
            let count = epoll_wait(epoll, &events, Int32(events.count), timeout)
            if count < 0 && errno != EINTR {
                context.logger.critical("epoll_wait failed: \(SocketFile.errorText(errno)); this loop stops")
                break
            }
            now = .now
            for i in 0..<max(0, Int(count)) {
                let event = events[i]
                switch event.data.u64 {
                case Self.wakeupKey:
                    wakeup.drain()
                case Self.listenerKey:
                    acceptor?.acceptAll(on: self)
                default:
                    let fd = Int32(truncatingIfNeeded: event.data.u64)
                    connections[fd]?.handle(events: event.events)
                }
            }
            runTasks()
            if stopping && connections.isEmpty { break }
            if now >= nextTick {
                tick()
                nextTick = now + Self.tickInterval(context.configuration)
            }
        }
        closeListener()
        // Whatever was handed to this loop after it stopped serving runs now (a connection
        // handed over is closed, not leaked); nothing more can be queued.
        let late = tasks.withLock { tasks -> [@Sendable (EpollLoop) -> Void] in
            tasks.stopped = true
            defer { tasks.pending = [] }
            return tasks.pending
        }
        for task in late { task(self) }
    }

    private func runTasks() {
        let pending = tasks.withLock { tasks -> [@Sendable (EpollLoop) -> Void] in
            defer { tasks.pending.removeAll(keepingCapacity: true) }
            return tasks.pending
        }
        for task in pending { task(self) }
    }

    /// Timers (idle and frame timeouts, waiting deadlines, a paused listener) are checked
    /// this often.
    static func tickInterval(_ configuration: ServerConfiguration) -> Duration {
        var interval: Duration = .milliseconds(20)
        if let idle = configuration.idleTimeout { interval = min(interval, idle / 4) }
        if let frame = configuration.frameTimeout { interval = min(interval, frame / 4) }
        return max(interval, .milliseconds(1))
    }

    private func tick() {
        acceptor?.tick(on: self)
        for connection in Array(connections.values) { connection.tick() }
    }

    // MARK: Connections

    /// Takes over an accepted connection (on this loop's thread).
    func adopt(_ fd: Int32, id: UInt64) {
        guard !stopping else {
            close(fd)
            context.connectionsOpen.subtract(1, ordering: .relaxed)
            return
        }
        let connection = EpollConnection(fd: fd, id: id, loop: self)
        connections[fd] = connection
        connectionCount.add(1, ordering: .relaxed)
        register(fd, key: UInt64(UInt32(bitPattern: fd)), events: connection.interest)
        context.logger.debug("connection opened", metadata: ["connection": "\(id)"])
        if draining { connection.drain() }
    }

    /// Called by a connection as it closes (its fd is closed afterwards by the caller).
    func forget(_ connection: EpollConnection) {
        guard connections[connection.fd] === connection else { return }
        connections.removeValue(forKey: connection.fd)
        connectionCount.subtract(1, ordering: .relaxed)
        context.connectionsOpen.subtract(1, ordering: .relaxed)
    }

    /// The connection `id` on `fd`, if it is still open (a closed fd may be reused).
    func connection(_ fd: Int32, id: UInt64) -> EpollConnection? {
        guard let connection = connections[fd], connection.id == id else { return nil }
        return connection
    }

    func closeListener() {
        acceptor?.close()
        acceptor = nil
    }

    func drain() {
        draining = true
        for connection in Array(connections.values) { connection.drain() }
    }

    func closeAll() {
        for connection in Array(connections.values) { connection.closeNow() }
    }

    func stop() {
        stopping = true
        closeListener()
        closeAll()
    }
}

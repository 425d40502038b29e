// The sidecar as a swift-service-lifecycle Service: run() frees the socket path, binds,
// serves until graceful shutdown, drains, and returns.

public import CoreMetrics
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The authorization sidecar server on a Unix domain socket.
///
/// `run()` binds (replacing a stale socket file, refusing a live one or a non-socket),
/// serves every connection on its event loop, and on graceful shutdown stops accepting,
/// removes the socket file, lets each connection finish the request it is receiving and
/// flush its responses (bounded by `shutdownGracePeriod`), closes them all, and returns.
/// Task cancellation closes everything at once.
public final class SidecarServer: Service, Sendable {
    public let configuration: ServerConfiguration
    public let snapshots: SnapshotHolder
    private let context: ServerContext
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let registry = ConnectionRegistry()
    private let lifecycle = Mutex(Lifecycle())
    private let ready = ReadySignal()

    private struct Lifecycle {
        var started = false
        var stopRequested = false
        var listener: (any Channel)?
        var epoll: EpollTransport?
        var socketIdentity: FileIdentity?
        var metrics: MetricsEndpoint?
    }

    /// Resumed when the epoll transport stops accepting (the NIO listener has closeFuture).
    private let stoppedAccepting = ReadySignal()

    /// - Parameters:
    ///   - configuration: where to listen and the limits to enforce. Not re-validated here
    ///     beyond what binding needs: call `validate()` first.
    ///   - snapshots: the snapshot holder requests read (load it before or after `run()`).
    ///   - reloader: what Reload requests and requests waiting for a newer snapshot ask to
    ///     reload (run it as a service of its own); without one, Reload is UNIMPLEMENTED
    ///     and such requests wait for whatever installs snapshots.
    ///   - eventLoopGroup: the loops connections are served on.
    ///   - reloadAllowed: whether a peer with this Unix uid may call Reload; by default the
    ///     daemon's own effective user and root.
    public init(
        configuration: ServerConfiguration,
        snapshots: SnapshotHolder,
        reloader: SnapshotReloader? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "authzd"),
        reloadAllowed: @escaping @Sendable (UInt32) -> Bool = SidecarServer.defaultReloadPolicy
    ) {
        self.configuration = configuration
        self.snapshots = snapshots
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        // The decision log is opened here, so that run() can refuse to start when it cannot be.
        var decisions: DecisionLog?
        if let settings = configuration.decisionLog {
            do {
                decisions = try DecisionLog(configuration: settings, logger: logger)
                decisionLogError = nil
            } catch {
                decisionLogError = error
            }
        } else {
            decisionLogError = nil
        }
        self.context = ServerContext(
            configuration: configuration, snapshots: snapshots, reloader: reloader, logger: logger,
            reloadAllowed: reloadAllowed, decisions: decisions)
    }

    /// Why the configured decision log could not be opened (run() throws it).
    private let decisionLogError: ConfigurationError?

    /// The decision log's counters; nil without one.
    public var decisionLogStatistics: DecisionLog.Statistics? { context.decisions?.statistics }

    /// The daemon's own effective user and root may reload.
    public static let defaultReloadPolicy: @Sendable (UInt32) -> Bool = { uid in
        uid == 0 || uid == UInt32(geteuid())
    }

    /// Returns once the server listens (the socket file exists with its permissions), or
    /// throws the error that stopped `run()` before it could.
    public func waitUntilListening() async throws {
        try await ready.wait()
    }

    /// The server's counters, as a Status request reports them.
    public var status: StatusSummary {
        let result = context.status()
        return StatusSummary(
            snapshotVersion: result.snapshotVersion, connectionsOpen: Int(result.connectionsOpen),
            requestsServed: result.requestsServed)
    }

    /// A few counters for logs and tests (the full set is the Status request's).
    public struct StatusSummary: Sendable, Equatable {
        public var snapshotVersion: UInt64
        public var connectionsOpen: Int
        public var requestsServed: UInt64
    }

    // MARK: - Service

    public func run() async throws {
        let firstRun = lifecycle.withLock { state in
            defer { state.started = true }
            return !state.started
        }
        guard firstRun else {
            throw ServerError(.bind, "SidecarServer.run() was called twice; create a new server instead")
        }
        let listener: (any Channel)?
        let epoll: EpollTransport?
        var metricsEndpoint: MetricsEndpoint?
        do {
            try configuration.validate()
            if let decisionLogError { throw decisionLogError }
            context.decisions?.start()
            FileDescriptorLimit.raise(for: configuration.maxConnections, logger: logger)
            // Before the request socket: its probes say "not serving" until that is bound.
            if let address = configuration.metricsListen {
                let endpoint = try await MetricsEndpoint.start(address, probes: probes(), logger: logger)
                metricsEndpoint = endpoint
                lifecycle.withLock { $0.metrics = endpoint }
            }
            switch configuration.transport {
            case .nio:
                listener = try await bind()
                epoll = nil
            case .epoll:
                epoll = try await bindEpoll()
                listener = nil
            }
        } catch {
            await metricsEndpoint?.stop()
            await context.decisions?.stop()
            ready.fail(error)
            throw error
        }
        // Only the version: a reference held for the whole run would keep that snapshot
        // alive after it is replaced.
        let servedVersion = snapshots.snapshot.map { String($0.version) } ?? "none"
        logger.info(
            "listening",
            metadata: [
                "socket": "\(configuration.socketPath)",
                "snapshot-version": "\(servedVersion)",
                "max-connections": "\(configuration.maxConnections)",
                "transport": "\(configuration.transport.rawValue)",
            ])
        ready.succeed()

        let cancelled = Atomic<Bool>(false)
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                // Returns when the listener closes: on shutdown, or when it fails.
                if let listener {
                    try? await listener.closeFuture.get()
                } else {
                    try? await self.stoppedAccepting.wait()
                }
            } onGracefulShutdown: {
                self.stopAccepting(reason: "graceful shutdown")
            }
        } onCancel: {
            cancelled.store(true, ordering: .relaxed)
            self.stopAccepting(reason: "cancellation")
        }

        let unexpected = lifecycle.withLock { !$0.stopRequested }
        if unexpected {
            // The listener failed on its own: take the socket down and the connections too.
            stopAccepting(reason: "listener failure")
        }
        if let epoll {
            await drain(
                immediately: cancelled.load(ordering: .relaxed), count: { epoll.openConnections },
                closeAll: {
                    let open = epoll.openConnections
                    epoll.closeAll()
                    return open
                })
            await epoll.shutdown()
        } else {
            let registry = self.registry
            await drain(
                immediately: cancelled.load(ordering: .relaxed) || unexpected, count: { registry.count },
                closeAll: { registry.closeAll() })
        }
        await metricsEndpoint?.stop()
        // After the loops: every decision they recorded is written before the file closes.
        await context.decisions?.stop()
        logger.info("stopped", metadata: ["requests-served": "\(context.requestsServed.load(ordering: .relaxed))"])
        if unexpected {
            throw ServerError(.listener, "the listening socket \(configuration.socketPath) closed unexpectedly")
        }
    }

    // MARK: - Metrics and health

    /// Where the metrics endpoint listens (the port chosen for port 0), once `run()` bound
    /// it; nil without --metrics-listen.
    public var metricsAddress: MetricsAddress? {
        lifecycle.withLock { $0.metrics?.address }
    }

    /// A swift-metrics factory whose metrics `/metrics` serves with the server's own (nil
    /// without --metrics-listen). authzd bootstraps its `MetricsSystem` with it.
    public var metricsFactory: (any MetricsFactory)? {
        context.metrics?.factory
    }

    /// A request loop must run a no-op task within this for /healthz to be 200.
    static let livenessTimeout: TimeAmount = .seconds(1)

    private func probes() -> MetricsProbes {
        MetricsProbes(
            metrics: { [context] in context.metrics?.render(context) ?? [] },
            readiness: { [weak self] in
                guard let self else { return "the server is gone" }
                return self.readiness()
            },
            liveness: { [weak self] eventLoop in
                guard let self else { return eventLoop.makeSucceededFuture("the server is gone") }
                return self.liveness(replyingOn: eventLoop)
            })
    }

    /// Nil when a snapshot is in service, checks are not failing closed and the request
    /// socket is served; else why not.
    private func readiness() -> String? {
        guard lifecycle.withLock({ $0.listener != nil || $0.epoll != nil }) else {
            return "the request socket is not served (starting or shutting down)"
        }
        let state = snapshots.current
        guard state.snapshot != nil else {
            return "no snapshot is loaded" + (state.lastLoadError.map { " (last load error: \($0))" } ?? "")
        }
        if let reason = context.failClosedReason() { return "failing closed: \(reason)" }
        return nil
    }

    /// Has every request loop run a no-op task; completes on `eventLoop` with nil when all
    /// did within `livenessTimeout`, else why not.
    private func liveness(replyingOn eventLoop: any EventLoop) -> EventLoopFuture<String?> {
        let (listener, epoll) = lifecycle.withLock { ($0.listener, $0.epoll) }
        let pings: [EventLoopFuture<Void>]
        if let epoll {
            pings = epoll.ping(replyingOn: eventLoop)
        } else if listener != nil {
            pings = eventLoopGroup.makeIterator().map { loop in loop.submit {}.hop(to: eventLoop) }
        } else {
            return eventLoop.makeSucceededFuture("the request socket is not served (starting or shutting down)")
        }
        let promise = eventLoop.makePromise(of: String?.self)
        let once = FirstCompletion()
        let timeout = eventLoop.scheduleTask(in: Self.livenessTimeout) {
            if once.claim() { promise.succeed("a request loop did not run a task within \(Self.livenessTimeout)") }
        }
        EventLoopFuture.andAllSucceed(pings, on: eventLoop).whenComplete { result in
            timeout.cancel()
            guard once.claim() else { return }
            switch result {
            case .success: promise.succeed(nil)
            case .failure: promise.succeed("a request loop has stopped")
            }
        }
        return promise.futureResult
    }

    /// Frees the socket path, has `listen` bind and listen at a staging name beside it,
    /// applies the mode and group, then links the socket into place: clients never find
    /// it at the path before it accepts, or before it is restricted. On failure leaves no
    /// socket file behind (`discard` closes what `listen` opened). Returns the listener and
    /// the identity of the file at the path.
    private func listenAtSocketPath<Listener>(
        _ listen: (_ bindPath: String) async throws -> Listener, discard: (Listener) async -> Void
    ) async throws -> (Listener, FileIdentity?) {
        let path = configuration.socketPath
        if try SocketFile.prepareForBind(path) {
            logger.notice("replaced a stale socket file left by an earlier run", metadata: ["socket": "\(path)"])
        }
        let staged = SocketFile.stagingPath(for: path)
        let bindPath = staged ?? path
        if let staged { unlink(staged) }
        let listener = try await listen(bindPath)
        let stagedIdentity = SocketFile.identity(bindPath)
        do throws(ServerError) {
            try SocketFile.applyPermissions(bindPath, mode: configuration.socketMode, group: configuration.socketGroup)
            if let staged { try SocketFile.publish(staged, at: path) }
        } catch {
            SocketFile.remove(bindPath, ifIdentity: stagedIdentity)
            await discard(listener)
            throw error
        }
        return (listener, SocketFile.identity(path))
    }

    /// Listens with a non-blocking socket and starts the epoll loops on it.
    private func bindEpoll() async throws -> EpollTransport {
        let path = configuration.socketPath
        let backlog = Int32(clamping: configuration.listenBacklog)
        let (fd, identity) = try await listenAtSocketPath({ bindPath throws(ServerError) -> Int32 in
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw ServerError(.bind, "cannot create a socket: \(SocketFile.errorText(errno))") }
            let bound = SocketFile.withSocketAddress(bindPath) { address, length in
                Glibc.bind(fd, address, length) == 0 ? 0 : errno
            }
            guard let bound, bound == 0 else {
                close(fd)
                throw ServerError(
                    .bind, "cannot listen on \(path): \(bound.map { SocketFile.errorText($0) } ?? "the path is too long")")
            }
            guard listen(fd, backlog) == 0 else {
                let code = errno
                let identity = SocketFile.identity(bindPath)
                close(fd)
                SocketFile.remove(bindPath, ifIdentity: identity)
                throw ServerError(.bind, "cannot listen on \(path): \(SocketFile.errorText(code))")
            }
            return fd
        }, discard: { fd in close(fd) })
        let transport: EpollTransport
        do throws(ServerError) {
            transport = try EpollTransport(listener: fd, loopCount: configuration.eventLoops, context: context)
        } catch {
            close(fd)
            SocketFile.remove(path, ifIdentity: identity)
            throw error
        }
        let stopEarly = lifecycle.withLock { state in
            state.epoll = transport
            state.socketIdentity = identity
            return state.stopRequested
        }
        if stopEarly { stopAccepting(reason: "shutdown before listening") }
        return transport
    }

    /// Listens with a SwiftNIO server bootstrap.
    private func bind() async throws -> any Channel {
        let path = configuration.socketPath
        let context = self.context
        let registry = self.registry
        let maxConnections = configuration.maxConnections
        let logger = self.logger
        let bootstrap = ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.backlog, value: Int32(clamping: configuration.listenBacklog))
            // Out of file descriptors, accepting pauses with a backoff instead of spinning,
            // and the log says so once, then at most every 10 s.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptFailureHandler(logger: logger))
                }
            }
            // A client may send its requests, shut down its sending side and read the answers.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(
                .writeBufferWaterMark,
                value: .init(low: configuration.writeBufferLowWaterMark, high: configuration.writeBufferHighWaterMark)
            )
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Self.initialize(channel, context: context, registry: registry, maxConnections: maxConnections)
                }
            }
        let (listener, identity) = try await listenAtSocketPath({ bindPath -> any Channel in
            do {
                return try await bootstrap.bind(unixDomainSocketPath: bindPath).get()
            } catch {
                throw ServerError(.bind, "cannot listen on \(path)", cause: error)
            }
        }, discard: { listener in try? await listener.close() })
        let stopEarly = lifecycle.withLock { state in
            state.listener = listener
            state.socketIdentity = identity
            return state.stopRequested
        }
        if stopEarly { stopAccepting(reason: "shutdown before listening") }
        return listener
    }

    /// Sets up a new connection's pipeline, on its event loop.
    private static func initialize(
        _ channel: any Channel, context: ServerContext, registry: ConnectionRegistry, maxConnections: Int
    ) throws {
        let open = context.connectionsOpen.add(1, ordering: .relaxed).newValue
        let id = context.nextConnectionID.add(1, ordering: .relaxed).oldValue
        context.metrics?.connectionsAccepted.add(1, ordering: .relaxed)
        channel.closeFuture.whenComplete { _ in
            context.connectionsOpen.subtract(1, ordering: .relaxed)
        }
        let pipeline = channel.pipeline.syncOperations
        if open > maxConnections {
            context.metrics?.refusedOverLimit.add(1, ordering: .relaxed)
            context.logger.notice(
                "rejecting connection: \(maxConnections) connections are open",
                metadata: ["connection": "\(id)"])
            try pipeline.addHandler(RejectConnectionHandler(limit: maxConnections))
            return
        }
        // One shard per event loop: every connection on this loop writes it, on its thread.
        let stats = context.metrics?.shard(forLoop: ObjectIdentifier(channel.eventLoop))
        let decisions = context.decisions.map { DecisionRecorder(log: $0, ring: $0.ring(forLoop: ObjectIdentifier(channel.eventLoop))) }
        try pipeline.addHandler(ConnectionHandler(server: context, connectionID: id, stats: stats, decisions: decisions))
        registry.add(channel, id: id)
        channel.closeFuture.whenComplete { _ in registry.remove(id: id) }
        context.logger.debug("connection opened", metadata: ["connection": "\(id)"])
    }

    /// Removes the socket file (new clients find nothing to connect to), closes the
    /// listener and tells every connection to drain. Idempotent.
    private func stopAccepting(reason: String) {
        let (listener, epoll, identity, first) = lifecycle.withLock { state in
            defer { state.stopRequested = true }
            let listener = state.listener
            let epoll = state.epoll
            let identity = state.socketIdentity
            state.listener = nil
            state.epoll = nil
            state.socketIdentity = nil
            return (listener, epoll, identity, !state.stopRequested)
        }
        if first { logger.info("stopping", metadata: ["reason": "\(reason)"]) }
        guard listener != nil || epoll != nil else { return }
        if !SocketFile.remove(configuration.socketPath, ifIdentity: identity) {
            logger.notice(
                "left the socket path alone: it is no longer the socket this server bound",
                metadata: ["socket": "\(configuration.socketPath)"])
        }
        if let listener {
            listener.close(promise: nil)
            registry.beginDraining()
        }
        if let epoll {
            epoll.stopAccepting()
            epoll.beginDraining()
            stoppedAccepting.succeed()
        }
    }

    /// Waits for connections to finish (up to the grace period), then closes the rest.
    private func drain(immediately: Bool, count: () -> Int, closeAll: () -> Int) async {
        if !immediately {
            let deadline = ContinuousClock.now + configuration.shutdownGracePeriod
            while count() > 0, ContinuousClock.now < deadline {
                do {
                    try await Task.sleep(for: .milliseconds(5))
                } catch {
                    break  // cancelled: close the rest now
                }
            }
        }
        let remaining = closeAll()
        if remaining > 0 {
            logger.notice("closed \(remaining) connection(s) that did not finish in time")
        }
        // Closing is immediate on each loop; wait (bounded) for the counters to settle.
        let settle = ContinuousClock.now + .seconds(2)
        while count() > 0, ContinuousClock.now < settle {
            try? await Task.sleep(for: .milliseconds(2))
        }
    }
}

/// Open connections, for draining on shutdown.
final class ConnectionRegistry: Sendable {
    private struct State {
        var channels: [UInt64: any Channel] = [:]
        var draining = false
    }

    private let state = Mutex(State())

    var count: Int { state.withLock { $0.channels.count } }

    /// Registers a connection; one that arrives while draining is told to drain at once.
    func add(_ channel: any Channel, id: UInt64) {
        let draining = state.withLock { state in
            state.channels[id] = channel
            return state.draining
        }
        if draining {
            // After the pipeline is set up and the channel registered.
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        }
    }

    func remove(id: UInt64) {
        _ = state.withLock { $0.channels.removeValue(forKey: id) }
    }

    /// Tells every connection (and every later one) to finish and close.
    func beginDraining() {
        let channels: [any Channel] = state.withLock { state in
            guard !state.draining else { return [] }
            state.draining = true
            return Array(state.channels.values)
        }
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }

    /// Closes every connection now; returns how many were open.
    @discardableResult
    func closeAll() -> Int {
        let channels = state.withLock { Array($0.channels.values) }
        for channel in channels { channel.close(promise: nil) }
        return channels.count
    }
}

/// A one-time "listening" (or "failed to listen") signal for any number of waiters.
final class ReadySignal: Sendable {
    private enum State {
        case waiting([CheckedContinuation<Void, any Error>])
        case done(Result<Void, any Error>)
    }

    private let state = Mutex(State.waiting([]))

    func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let result: Result<Void, any Error>? = state.withLock { state in
                switch state {
                case .waiting(var waiters):
                    waiters.append(continuation)
                    state = .waiting(waiters)
                    return nil
                case .done(let result):
                    return result
                }
            }
            if let result { continuation.resume(with: result) }
        }
    }

    func succeed() { complete(.success(())) }
    func fail(_ error: any Error) { complete(.failure(error)) }

    private func complete(_ result: Result<Void, any Error>) {
        let waiters: [CheckedContinuation<Void, any Error>] = state.withLock { state in
            guard case .waiting(let waiters) = state else { return [] }
            state = .done(result)
            return waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }
}

/// Accept failures on the SwiftNIO listener (EMFILE and the like). SwiftNIO keeps the
/// level-triggered listener armed after a failed accept (its `AcceptBackoffHandler` is
/// never asked to read again in that state), so a full descriptor table would spin the
/// loop: this handler turns `autoRead` off, which disarms the listener, and on again after
/// a backoff (10 ms doubling to 1 s, reset by a successful accept). It logs once when
/// failures start, then at most every 10 s with a count.
final class AcceptFailureHandler: ChannelInboundHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let logger: Logger
    private var lastLogged: NIODeadline?
    private var sinceLog = 0
    private var backoff = TimeAmount.milliseconds(10)
    private var paused = false

    init(logger: Logger) {
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if lastLogged != nil {
            logger.notice("accepting connections again after accept failures")
            lastLogged = nil
            sinceLog = 0
        }
        backoff = .milliseconds(10)
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is IOError else {
            context.fireErrorCaught(error)
            return
        }
        let now = NIODeadline.now()
        sinceLog += 1
        if lastLogged.map({ now - $0 >= .seconds(10) }) ?? true {
            logger.warning(
                "cannot accept connections: \(error) (\(sinceLog) failure(s) since the last report); accepting pauses and retries with a backoff (raise the nofile limit or lower --max-connections)"
            )
            lastLogged = now
            sinceLog = 0
        }
        guard !paused else { return }
        paused = true
        let channel = context.channel
        channel.setOption(.autoRead, value: false).whenComplete { _ in }
        let delay = backoff
        backoff = min(backoff * 2, .seconds(1))
        context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            self.paused = false
            channel.setOption(.autoRead, value: true).whenComplete { _ in }
        }
    }
}

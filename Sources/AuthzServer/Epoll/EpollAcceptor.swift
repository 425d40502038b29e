// Accepting connections on the epoll transport: spreading them over the loops, the
// connection limit, and running out of file descriptors without spinning.
//
// When accept(2) fails with EMFILE/ENFILE (or the kernel is out of memory) the connection
// stays in the backlog and the level-triggered listener fires again at once. So the
// acceptor keeps one descriptor in reserve: it closes it, accepts the waiting connection,
// answers it RESOURCE_EXHAUSTED, closes it and takes the reserve back. If even that fails,
// it stops listening for a backoff (10 ms doubling to 1 s) and tries again. The log says it
// once, then at most every 10 s with the count of connections shed.

import AuthzWire
import CEpoll

#if canImport(Glibc)
import Glibc
#endif

/// The listening socket of the epoll transport, on loop 0's thread.
final class EpollAcceptor {
    let listener: Int32
    private var loops: [EpollLoop]
    private let context: ServerContext
    private var nextPeer = 0
    /// A descriptor held for answering one connection when none is left.
    private var reserve: Int32
    /// Listening is paused until then (descriptors exhausted even with the reserve).
    private(set) var pausedUntil: ContinuousClock.Instant?
    private var backoff = EpollAcceptor.initialBackoff
    private var exhaustion = Exhaustion()

    static let initialBackoff: Duration = .milliseconds(10)
    static let maxBackoff: Duration = .seconds(1)
    static let logInterval: Duration = .seconds(10)

    /// Rate-limited reporting of an exhaustion episode.
    private struct Exhaustion {
        var active = false
        var lastLogged: ContinuousClock.Instant?
        var shedSinceLog = 0
        var shedTotal = 0
    }

    init(listener: Int32, loops: [EpollLoop], context: ServerContext) {
        self.listener = listener
        self.loops = loops
        self.context = context
        reserve = Self.openReserve()
    }

    private static func openReserve() -> Int32 {
        open("/dev/null", O_RDONLY | O_CLOEXEC)
    }

    func acceptAll(on loop: EpollLoop) {
        while pausedUntil == nil, !loops.isEmpty {
            let fd = authz_accept_nonblocking(listener)
            if fd < 0 {
                let code = errno
                switch code {
                case EINTR, ECONNABORTED, EPROTO:
                    continue
                case EAGAIN, EWOULDBLOCK:
                    return
                case EMFILE, ENFILE, ENOMEM, ENOBUFS:
                    if !shedWithReserve(code, now: loop.now) { pause(loop, code) }
                    continue
                default:
                    context.logger.error("accept failed: \(SocketFile.errorText(code)); pausing accepts")
                    pause(loop, code)
                    return
                }
            }
            if exhaustion.active { recovered() }
            let open = context.connectionsOpen.add(1, ordering: .relaxed).newValue
            let id = context.nextConnectionID.add(1, ordering: .relaxed).oldValue
            context.metrics?.connectionsAccepted.add(1, ordering: .relaxed)
            if open > context.configuration.maxConnections {
                context.metrics?.refusedOverLimit.add(1, ordering: .relaxed)
                let limit = context.configuration.maxConnections
                context.logger.notice(
                    "rejecting connection: \(limit) connections are open", metadata: ["connection": "\(id)"])
                Self.answerAndClose(
                    fd, WireError(.resourceExhausted, "too many connections: this server accepts at most \(limit) at once"))
                context.connectionsOpen.subtract(1, ordering: .relaxed)
                continue
            }
            let target = loops[nextPeer % loops.count]
            nextPeer &+= 1
            if target === loop {
                loop.adopt(fd, id: id)
            } else if !target.execute({ $0.adopt(fd, id: id) }) {
                // That loop stopped: the connection is closed here, not leaked.
                Glibc.close(fd)
                context.connectionsOpen.subtract(1, ordering: .relaxed)
            }
        }
    }

    /// Out of descriptors: frees the reserve to accept and shed one connection. False when
    /// that did not work (no reserve, or the accept failed again).
    private func shedWithReserve(_ code: Int32, now: ContinuousClock.Instant) -> Bool {
        noteExhaustion(code, now: now)
        guard reserve >= 0 else {
            reserve = Self.openReserve()
            return false
        }
        Glibc.close(reserve)
        reserve = -1
        let fd = authz_accept_nonblocking(listener)
        if fd >= 0 {
            context.metrics?.connectionsAccepted.add(1, ordering: .relaxed)
            context.metrics?.refusedNoDescriptors.add(1, ordering: .relaxed)
            Self.answerAndClose(
                fd,
                WireError(
                    .resourceExhausted,
                    "the server is out of file descriptors: try again later (operators: raise its nofile limit or lower --max-connections)"
                ))
            exhaustion.shedSinceLog += 1
            exhaustion.shedTotal += 1
        }
        reserve = Self.openReserve()
        return fd >= 0 && reserve >= 0
    }

    private func noteExhaustion(_ code: Int32, now: ContinuousClock.Instant) {
        if !exhaustion.active {
            exhaustion.active = true
            exhaustion.lastLogged = now
            context.logger.warning(
                "cannot accept connections: \(SocketFile.errorText(code)); new connections are answered RESOURCE_EXHAUSTED and closed until descriptors free up (raise the nofile limit or lower --max-connections)"
            )
        } else if let last = exhaustion.lastLogged, now - last >= Self.logInterval {
            exhaustion.lastLogged = now
            context.logger.warning(
                "still out of file descriptors (\(SocketFile.errorText(code))): \(exhaustion.shedSinceLog) connection(s) shed in the last \(now - last)"
            )
            exhaustion.shedSinceLog = 0
        }
    }

    private func recovered() {
        context.logger.notice(
            "accepting connections again after running out of file descriptors; \(exhaustion.shedTotal) connection(s) were shed"
        )
        exhaustion = Exhaustion()
        backoff = Self.initialBackoff
    }

    /// Stops listening for a backoff; `tick` resumes.
    private func pause(_ loop: EpollLoop, _ code: Int32) {
        pausedUntil = loop.now + backoff
        backoff = min(backoff * 2, Self.maxBackoff)
        loop.modify(listener, key: EpollLoop.listenerKey, events: 0)
    }

    func tick(on loop: EpollLoop) {
        guard let until = pausedUntil, loop.now >= until else { return }
        pausedUntil = nil
        loop.modify(listener, key: EpollLoop.listenerKey, events: EPOLLIN.rawValue)
        acceptAll(on: loop)
    }

    func close() {
        guard !loops.isEmpty else { return }
        loops = []  // no cycle left between the loops
        Glibc.close(listener)
        if reserve >= 0 { Glibc.close(reserve) }
        reserve = -1
        pausedUntil = nil
    }

    /// Sends `error` (call id 0) and closes: for connections that are not served.
    static func answerAndClose(_ fd: Int32, _ error: WireError) {
        var bytes: [UInt8] = []
        WireResponse(callId: 0, error: error).append(to: &bytes)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        shutdown(fd, Int32(SHUT_WR))
        Glibc.close(fd)
    }
}

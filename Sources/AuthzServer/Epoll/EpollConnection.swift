// One client connection on the epoll transport: moves bytes between the socket and its
// `ConnectionSession`, and sets the loop's interest from what the session wants. Every
// decision (what to answer, when to stop reading, when to close) is the session's core's.

import CEpoll
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One client connection, owned by its loop.
final class EpollConnection {
    let fd: Int32
    let id: UInt64
    // The loop owns its connections and outlives them.
    unowned(unsafe) let loop: EpollLoop
    private let session: ConnectionSession
    /// The epoll events registered for the socket.
    // Loop-confined: no dynamic exclusivity checks (Package.swift).
    @exclusivity(unchecked) private(set) var interest: UInt32 = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
    @exclusivity(unchecked) private var closed = false

    init(fd: Int32, id: UInt64, loop: EpollLoop) {
        self.fd = fd
        self.id = id
        self.loop = loop
        let waker = ConnectionWaker { [loop] work in
            loop.execute { loop in loop.connection(fd, id: id)?.resume(work) }
        }
        session = ConnectionSession(
            id: id, context: loop.context, now: loop.now, fastPath: loop.fastPath, waker: waker,
            peer: { PeerCredentials.of(fd: fd) }, unreadByPeer: { PeerCredentials.unreadByPeer(fd: fd) },
            stats: loop.stats, decisions: loop.decisions)
    }

    // MARK: Events

    func handle(events: UInt32) {
        if events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            // The peer is gone (or the socket failed): nothing can be answered any more.
            // Reported even while nothing is asked for (a parked connection), so this is
            // where a hung-up client's waiting request is withdrawn.
            session.hangUp()
            close()
            return
        }
        if events & EPOLLOUT.rawValue != 0 { flush() }
        if !closed, events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue) != 0, session.wantsRead {
            read()
        }
        if !closed { settle() }
    }

    private func read() {
        let space = session.readSpace()
        let count = Glibc.read(fd, space.baseAddress, space.count)
        if count > 0 {
            session.didRead(count, now: loop.now)
            session.process(now: loop.now)
        } else if count == 0 {
            // The client sent everything it will send: answer every whole frame, then close.
            session.endOfInput()
        } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
            session.hangUp("connection error: \(SocketFile.errorText(errno))")
            close()
        }
    }

    /// A parked request's resumption, on the loop.
    func resume(_ work: (ConnectionSession) -> Void) {
        guard !closed else { return }
        work(session)
        session.process(now: loop.now)
        settle()
    }

    /// After anything happened: send, then close or set what to wait for.
    private func settle() {
        flush()
        guard !closed else { return }
        if session.shouldClose() {
            close()
            return
        }
        var wanted: UInt32 = 0
        if session.pendingOutput.count > 0 { wanted |= EPOLLOUT.rawValue }
        if session.wantsRead { wanted |= EPOLLIN.rawValue | EPOLLRDHUP.rawValue }
        if wanted != interest {
            interest = wanted
            loop.modify(fd, key: UInt64(UInt32(bitPattern: fd)), events: wanted)
        }
    }

    private func flush() {
        var output = session.pendingOutput
        while !closed, output.count > 0 {
            let sent = send(fd, output.baseAddress, output.count, Int32(MSG_NOSIGNAL))
            if sent > 0 {
                session.didSend(sent, now: loop.now)
                // Sending may have freed room below the high-water mark: answer what waited.
                if session.holdsInput { session.process(now: loop.now) }
                output = session.pendingOutput
            } else if sent < 0 && errno == EINTR {
                continue
            } else if sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                return
            } else {
                session.hangUp("connection error: \(SocketFile.errorText(errno))")
                close()
                return
            }
        }
    }

    // MARK: Timers, shutdown

    func tick() {
        guard !closed else { return }
        if session.tick(now: loop.now) {
            session.process(now: loop.now)
            settle()
        }
    }

    /// Graceful shutdown: finish what was started, then close.
    func drain() {
        guard !closed else { return }
        session.drain()
        session.process(now: loop.now)
        settle()
    }

    /// Closes now (shutdown grace period over).
    func closeNow() {
        guard !closed else { return }
        session.closeNow()
        close()
    }

    private func close() {
        guard !closed else { return }
        closed = true
        session.hangUp()  // no-op when the session already closed; withdraws a parked wait
        loop.forget(self)
        Glibc.close(fd)
        loop.context.logger.debug("connection closed", metadata: ["connection": "\(id)"])
    }
}

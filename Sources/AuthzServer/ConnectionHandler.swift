// The SwiftNIO transport (--transport nio): moves one connection's bytes between its
// channel and its `ConnectionSession`, exactly as the epoll transport does with a socket.
// Every decision (what to answer, when to stop reading, when to close) is the session's
// core's; this handler only copies bytes in, writes the answers out (one write and one
// flush per read batch), gates reads, and runs the core's timer.

import AuthzWire
import Logging
import NIOCore

final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let server: ServerContext
    private let connectionID: UInt64
    /// The event loop's metrics shard (nil without metrics).
    private let stats: RequestStats?
    /// The event loop's decision log ring (nil without a decision log).
    private let decisions: DecisionRecorder?
    // Event-loop-confined: no dynamic exclusivity checks (Package.swift).
    @exclusivity(unchecked) private var session: ConnectionSession?
    @exclusivity(unchecked) private var context: ChannelHandlerContext?
    @exclusivity(unchecked) private var credentials: PeerCredentials?
    /// A read was asked for while the session did not want one.
    @exclusivity(unchecked) private var pendingRead = false
    @exclusivity(unchecked) private var timer: Scheduled<Void>?
    @exclusivity(unchecked) private var timerDeadline: NIODeadline?
    @exclusivity(unchecked) private var closing = false

    init(server: ServerContext, connectionID: UInt64, stats: RequestStats? = nil, decisions: DecisionRecorder? = nil) {
        self.server = server
        self.connectionID = connectionID
        self.stats = stats
        self.decisions = decisions
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let waker = ConnectionWaker { work in
            loopBound.eventLoop.execute { loopBound.value.resume(work) }
        }
        session = ConnectionSession(
            id: connectionID, context: server, now: .now, fastPath: nil, waker: waker,
            peer: { [weak self] in self?.credentials },
            unreadByPeer: { [weak self] in self?.context.flatMap { PeerCredentials.unreadByPeer(of: $0.channel) } },
            stats: stats, decisions: decisions)
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        // On the event loop, this completes at once.
        PeerCredentials.of(context.channel).assumeIsolated().whenSuccess { self.credentials = $0 }
        armTimer(context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        session?.hangUp()
        // The session's waker refers back to this handler: dropping the session breaks
        // that cycle once the channel is gone.
        session = nil
        closing = true
        timer?.cancel()
        timer = nil
        server.logger.debug("connection closed", metadata: ["connection": "\(connectionID)"])
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        session?.hangUp()
        session = nil
        self.context = nil
    }

    // MARK: Bytes in

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session, !closing else { return }
        let buffer = Self.unwrapInboundIn(data)
        let now = ContinuousClock.now
        buffer.withUnsafeReadableBytes { session.received($0, now: now) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        settle(context)
        context.fireChannelReadComplete()
    }

    /// A parked request's resumption, on the event loop.
    private func resume(_ work: (ConnectionSession) -> Void) {
        guard let session, let context, !closing else { return }
        work(session)
        settle(context)
    }

    /// After anything happened: answer, write, then close or decide about reading.
    private func settle(_ context: ChannelHandlerContext) {
        guard let session, !closing else { return }
        session.process(now: .now)
        let pending = session.pendingOutput
        if pending.count > 0 {
            var buffer = context.channel.allocator.buffer(capacity: pending.count)
            buffer.writeBytes(pending)
            let count = pending.count
            session.handedOff(count)
            let promise = context.eventLoop.makePromise(of: Void.self)
            promise.futureResult.assumeIsolated().whenComplete { result in
                guard let session = self.session else { return }
                switch result {
                case .success:
                    session.delivered(count, now: .now)
                    if let context = self.context { self.settle(context) }
                case .failure(let error):
                    session.hangUp("connection error: \(error)")
                }
            }
            context.writeAndFlush(Self.wrapOutboundOut(buffer), promise: promise)
        }
        if session.shouldClose() {
            closing = true
            context.close(promise: nil)
            return
        }
        if pendingRead, session.wantsRead {
            pendingRead = false
            context.read()
        }
        armTimer(context)
    }

    // MARK: Reads gated by the session

    func read(context: ChannelHandlerContext) {
        guard !closing else { return }
        guard let session, session.wantsRead else {
            pendingRead = true
            return
        }
        context.read()
    }

    // MARK: Events, errors, timers

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            session?.endOfInput()
            settle(context)
            return
        }
        if event is ChannelShouldQuiesceEvent {
            session?.drain()
            settle(context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        session?.hangUp("connection error: \(error)")
        closing = true
        context.close(promise: nil)
    }

    /// Keeps one timer at the session's next deadline.
    private func armTimer(_ context: ChannelHandlerContext) {
        guard let session, !closing, let next = session.nextDeadline else {
            timer?.cancel()
            timer = nil
            timerDeadline = nil
            return
        }
        let deadline = NIODeadline.now() + TimeAmount(ContinuousClock.now.duration(to: next))
        if let timerDeadline, timer != nil, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timer = nil
            self.timerDeadline = nil
            guard let session = self.session, let context = self.context, !self.closing else { return }
            _ = session.tick(now: .now)
            self.settle(context)
        }
    }
}

/// Answers a connection over the limit with RESOURCE_EXHAUSTED (call id 0) and closes it.
final class RejectConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let limit: Int
    private var answered = false

    init(limit: Int) {
        self.limit = limit
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { reject(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        reject(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Requests on a rejected connection are not read.
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func reject(_ context: ChannelHandlerContext) {
        guard !answered else { return }
        answered = true
        let response = WireResponse(
            callId: 0,
            error: WireError(.resourceExhausted, "too many connections: this server accepts at most \(limit) at once"))
        let size = response.encodedSize()
        var buffer = context.channel.allocator.buffer(capacity: size)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { response.encode(into: $0) }
        context.writeAndFlush(Self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

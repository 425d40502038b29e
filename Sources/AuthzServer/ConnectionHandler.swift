// The SwiftNIO transport (--transport nio): one connection's request path, on its event
// loop: payload → WireRequest (protobuf-c) →
// engine → WireResponse encoded straight into the outbound buffer; one write and ONE
// flush per read batch. Also the connection's guards: back-pressure (no reads while the
// channel is not writable), the idle timeout, framing errors, graceful drain.

import AuthzEngine
import AuthzWire
import Logging
import NIOCore
import Synchronization

final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// Serving.
        case open
        /// Graceful shutdown: finish the frame being received, then close.
        case draining
        /// Closing after the last response is flushed; reads nothing more.
        case closing
    }

    /// Responses are written (not flushed) once this many bytes are pending in a batch.
    private static let writeThreshold = 64 * 1024

    private let server: ServerContext
    private let decoder: FrameDecoder
    private var logger: Logger
    private let maxBatchChecks: Int
    private let idleTimeout: TimeAmount?

    private var state = State.open
    /// Responses of the current read batch not yet written.
    private var output: ByteBuffer?
    /// Written but not flushed.
    private var needsFlush = false
    /// Requests answered and not yet added to the server's counter.
    private var unreportedRequests: UInt64 = 0
    /// The snapshot read for the current read batch (read once per batch).
    private var batchSnapshot: Snapshot?
    private var batchSnapshotRead = false
    /// A read was requested while the channel was not writable.
    private var pendingRead = false
    private var lastActivity = NIODeadline.now()
    private var idleTask: Scheduled<Void>?
    /// At most one log line per connection for errors.
    private var errorLogged = false
    private var closeScheduled = false
    /// A request is waiting (for a newer snapshot, or a reload): later requests queue
    /// behind it, so answers keep request order, and nothing more is read meanwhile.
    private var parked = false
    private var queued = CircularBuffer<QueuedRequest>()
    /// The client shut down its sending side: close once everything is answered.
    private var inputClosed = false

    private struct QueuedRequest {
        var payload: ByteBuffer
        var receivedAt: NIODeadline
    }

    init(server: ServerContext, decoder: FrameDecoder, connectionID: UInt64) {
        self.server = server
        self.decoder = decoder
        self.maxBatchChecks = server.configuration.maxBatchSize
        self.idleTimeout = server.configuration.idleTimeout.map { TimeAmount($0) }
        var logger = server.logger
        logger[metadataKey: "connection"] = "\(connectionID)"
        self.logger = logger
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard idleTask == nil, let idleTimeout else { return }
        lastActivity = .now()
        scheduleIdleCheck(context, at: lastActivity + idleTimeout)
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closing
        idleTask?.cancel()
        idleTask = nil
        reportRequests()
        logger.debug("connection closed")
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTask?.cancel()
        idleTask = nil
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state != .closing else { return }
        let payload = Self.unwrapInboundIn(data)
        if parked {
            queued.append(QueuedRequest(payload: payload, receivedAt: .now()))
            return
        }
        handle(payload, receivedAt: nil, context)
    }

    /// Decodes and answers one request, or parks it. `receivedAt` is set for a request
    /// that waited in the queue (its deadline runs from then).
    private func handle(_ payload: ByteBuffer, receivedAt: NIODeadline?, _ context: ChannelHandlerContext) {
        let maxBatchChecks = self.maxBatchChecks
        let decoded = payload.withUnsafeReadableBytes { bytes in
            Result { () throws(WireRequestError) -> WireRequest in
                try WireRequest(decoding: bytes, maxBatchChecks: maxBatchChecks)
            }
        }
        unreportedRequests += 1
        let request: WireRequest
        switch decoded {
        case .success(let decoded):
            request = decoded
        case .failure(let failure):
            append(WireResponse(replyingTo: failure), context)
            return
        }
        if let receivedAt, request.deadlineMs > 0, receivedAt + .milliseconds(Int64(request.deadlineMs)) <= .now() {
            append(RequestProcessor.deadlinePassedInQueue(request), context)
            return
        }
        if !batchSnapshotRead {
            batchSnapshot = server.snapshots.snapshot
            batchSnapshotRead = true
        }
        if case .status = request.method { reportRequests() }
        let server = self.server
        switch RequestProcessor.dispose(request, snapshot: batchSnapshot, server: server) {
        case .respond(let response):
            append(response, context)
        case .waitForVersion(let version):
            let deadline =
                (receivedAt ?? .now()) + TimeAmount(RequestProcessor.waitBudget(request, server.configuration))
            server.reloader?.requestCheck()
            let future = server.snapshots.waitForVersion(version, on: context.eventLoop, until: deadline)
                .map { snapshot in RequestProcessor.answerAfterWaiting(request, snapshot: snapshot, server: server) }
            park(future, context)
        case .reload:
            park(reload(request, context), context)
        }
    }

    /// A Reload request: only from the daemon's own Unix user or root (SO_PEERCRED).
    private func reload(_ request: WireRequest, _ context: ChannelHandlerContext) -> EventLoopFuture<WireResponse> {
        let server = self.server
        let callId = request.callId
        let eventLoop = context.eventLoop
        return PeerCredentials.of(context.channel).flatMap { credentials in
            let reloader: SnapshotReloader
            switch RequestProcessor.reloader(for: callId, in: server, peer: credentials) {
            case .success(let allowed): reloader = allowed
            case .failure(let refused): return eventLoop.makeSucceededFuture(refused.response)
            }
            let promise = eventLoop.makePromise(of: WireResponse.self)
            reloader.reload { outcome in
                promise.succeed(RequestProcessor.reloadResponse(callId: callId, outcome: outcome))
            }
            return promise.futureResult
        }
    }

    /// Holds the connection's later requests until `future` gives this one's answer.
    private func park(_ future: EventLoopFuture<WireResponse>, _ context: ChannelHandlerContext) {
        parked = true
        future.assumeIsolated().whenComplete { result in
            self.parked = false
            guard self.state != .closing else { return }
            switch result {
            case .success(let response):
                self.append(response, context)
            case .failure(let error):
                self.append(WireResponse(callId: 0, error: WireError(.internal, "\(error)")), context)
            }
            self.resumeQueue(context)
        }
    }

    /// Answers the queued requests in order until one parks again, then flushes.
    private func resumeQueue(_ context: ChannelHandlerContext) {
        batchSnapshotRead = false
        batchSnapshot = nil
        while !parked, let next = queued.popFirst() {
            handle(next.payload, receivedAt: next.receivedAt, context)
        }
        batchSnapshotRead = false
        batchSnapshot = nil
        reportRequests()
        writeOutput(context)
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        guard !parked else { return }
        finishIfDone(context)
        if pendingRead, state != .closing, context.channel.isWritable {
            pendingRead = false
            context.read()
        }
    }

    /// Closes after the last answer once the client stopped sending (or the server is
    /// draining) and nothing is waiting or half-received.
    private func finishIfDone(_ context: ChannelHandlerContext) {
        guard !parked, queued.isEmpty else { return }
        if inputClosed || (state == .draining && !decoder.holdsPartialFrame) {
            closeAfterFlushing(context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        lastActivity = .now()
        batchSnapshot = nil
        batchSnapshotRead = false
        // Counted before the answers go out, so a client that saw them sees them counted.
        reportRequests()
        if state != .closing {
            writeOutput(context)
            if needsFlush {
                needsFlush = false
                context.flush()
            }
        }
        finishIfDone(context)
        context.fireChannelReadComplete()
    }

    /// Encodes `response` at the end of the batch's output buffer.
    private func append(_ response: WireResponse, _ context: ChannelHandlerContext) {
        let size = response.encodedSize()
        var buffer = output.take() ?? context.channel.allocator.buffer(capacity: max(size, 1024))
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { destination in
            response.encode(into: destination)
        }
        output = buffer
        if buffer.readableBytes >= Self.writeThreshold { writeOutput(context) }
    }

    private func writeOutput(_ context: ChannelHandlerContext) {
        guard let buffer = output.take(), buffer.readableBytes > 0 else { return }
        context.write(Self.wrapOutboundOut(buffer), promise: nil)
        needsFlush = true
    }

    private func reportRequests() {
        guard unreportedRequests > 0 else { return }
        server.requestsServed.add(unreportedRequests, ordering: .relaxed)
        unreportedRequests = 0
    }

    // MARK: Back-pressure

    func read(context: ChannelHandlerContext) {
        guard state != .closing else { return }
        guard context.channel.isWritable, !parked else {
            pendingRead = true
            return
        }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, pendingRead, !parked, state != .closing {
            pendingRead = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Errors, idle timeout, shutdown

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let framing = error as? FrameDecodingError {
            // The stream cannot be trusted: answer once with call id 0, then close.
            guard state != .closing else { return }
            logOnce(.notice, "closing connection: \(framing.error.code.name): \(framing.error.message)")
            writeOutput(context)
            append(WireResponse(callId: 0, error: framing.error), context)
            closeAfterFlushing(context)
            return
        }
        if error is ByteToMessageDecoderError {
            // Bytes after a framing error, while the connection is closing.
            return
        }
        if state != .closing {
            logOnce(.info, "connection error: \(error)")
        }
        state = .closing
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // The client sent everything it will send: answer it all, then close.
            inputClosed = true
            finishIfDone(context)
            return
        }
        if event is ChannelShouldQuiesceEvent {
            guard state == .open else { return }
            state = .draining
            finishIfDone(context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Writes what is pending, then closes once every earlier write has completed.
    private func closeAfterFlushing(_ context: ChannelHandlerContext) {
        state = .closing
        guard !closeScheduled else { return }
        closeScheduled = true
        let buffer = output.take() ?? context.channel.allocator.buffer(capacity: 0)
        needsFlush = false
        context.writeAndFlush(Self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    private func scheduleIdleCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        idleTask = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.checkIdle(context)
        }
    }

    private func checkIdle(_ context: ChannelHandlerContext) {
        idleTask = nil
        guard let idleTimeout, context.channel.isActive else { return }
        let deadline = lastActivity + idleTimeout
        if NIODeadline.now() < deadline {
            scheduleIdleCheck(context, at: deadline)
            return
        }
        if decoder.holdsPartialFrame {
            logOnce(.info, "closing connection: idle for \(idleTimeout) in the middle of a frame")
        } else {
            logger.debug("closing idle connection")
        }
        state = .closing
        context.close(promise: nil)
    }

    private func logOnce(_ level: Logger.Level, _ message: @autoclosure () -> String) {
        guard !errorLogged else { return }
        errorLogged = true
        logger.log(level: level, "\(message())")
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

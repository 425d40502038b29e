// An async/await client of the sidecar's wire protocol over a Unix domain socket, on
// SwiftNIO. One connection carries any number of concurrent calls (pipelining, matched by
// call_id); it is reused for every call and re-established on the next call after it is
// lost.

public import AuthzWire
public import NIOCore
public import NIOPosix
import Synchronization

/// A client of one authzd socket.
///
///     let client = try await SidecarClient.connect(socketPath: "/run/authzd/authz.sock")
///     defer { Task { await client.close() } }
///     let reply = try await client.effectivePermission(user: "u1", project: "p1", requiredLevel: .canEdit)
///     print(reply.result.allowed, reply.snapshotVersion)
///
/// Thread-safe: share one client between tasks. The client assigns call ids itself, so
/// the `callId` of a request given to `call(_:)` is replaced.
public final class SidecarClient: Sendable {
    public struct Configuration: Sendable {
        /// How long connecting may take.
        public var connectTimeout: Duration
        /// How long a call waits for its answer; nil waits as long as the connection lives.
        public var callTimeout: Duration?
        /// The largest response payload accepted.
        public var maxResponseSize: Int

        public init(connectTimeout: Duration = .seconds(5), callTimeout: Duration? = .seconds(30), maxResponseSize: Int = 16 << 20) {
            self.connectTimeout = connectTimeout
            self.callTimeout = callTimeout
            self.maxResponseSize = maxResponseSize
        }
    }

    public let socketPath: String
    public let configuration: Configuration
    private let eventLoopGroup: any EventLoopGroup
    private let state = Mutex(ConnectionState.idle)
    private let nextCallID = Atomic<UInt64>(1)

    private enum ConnectionState {
        case idle
        case connecting(EventLoopFuture<any Channel>)
        case connected(any Channel)
        case closed
    }

    /// A client that connects on its first call.
    public init(
        socketPath: String, configuration: Configuration = Configuration(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.socketPath = socketPath
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
    }

    /// Connects now, so that a wrong path or a server that is down fails here.
    public static func connect(
        socketPath: String, configuration: Configuration = Configuration(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(AuthzClientError) -> SidecarClient {
        let client = SidecarClient(socketPath: socketPath, configuration: configuration, eventLoopGroup: eventLoopGroup)
        _ = try await client.channel()
        return client
    }

    deinit {
        if case .connected(let channel) = state.withLock({ $0 }) {
            channel.close(promise: nil)
        }
    }

    // MARK: Calls

    /// Sends `request` and returns the server's response, whatever its status: a response
    /// with a non-OK status is returned, not thrown. Throws only when no response came
    /// (connection, timeout, cancellation, an unreadable response).
    ///
    /// When the connection is lost before the answer arrives (the server's idle timeout
    /// closing it just as the request went out, a restart), the request is sent once more
    /// on a new connection: every method of the protocol is safe to repeat.
    public func call(_ request: WireRequest) async throws(AuthzClientError) -> WireResponse {
        var request = request
        request.callId = nextCallID.add(1, ordering: .relaxed).oldValue
        var attempt = 0
        while true {
            attempt += 1
            let channel = try await self.channel()
            do {
                return try await send(request, on: channel)
            } catch where error.cause is ConnectionLost && attempt < 2 {
                forget(channel)
            }
        }
    }

    private func send(_ request: WireRequest, on channel: any Channel) async throws(AuthzClientError) -> WireResponse {
        let call = PendingCall(request: request, timeout: configuration.callTimeout)
        let socketPath = self.socketPath
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<WireResponse, any Error>) in
                    guard call.start(continuation) else { return }
                    channel.write(call).whenFailure { error in
                        call.complete(
                            .failure(
                                AuthzClientError(
                                    code: .unavailable, message: "cannot send the request to \(socketPath)",
                                    cause: ConnectionLost(underlying: error))))
                    }
                }
            } onCancel: {
                call.complete(.failure(AuthzClientError(code: .cancelled, message: "the call was cancelled")))
                channel.triggerUserOutboundEvent(ForgetCall(id: call.id), promise: nil)
            }
        } catch let error as AuthzClientError {
            throw error
        } catch {
            throw AuthzClientError(code: .internal, message: "unexpected error", cause: error)
        }
    }

    /// Drops `channel` as the current connection (the next call connects anew).
    private func forget(_ channel: any Channel) {
        state.withLock { state in
            if case .connected(let current) = state, current === channel { state = .idle }
        }
    }

    /// Closes the connection after the calls in flight are answered (each bounded by the
    /// call timeout); later calls fail with `cancelled`.
    public func close() async {
        let previous = state.withLock { state in
            defer { state = .closed }
            return state
        }
        let channel: (any Channel)?
        switch previous {
        case .connected(let connected): channel = connected
        case .connecting(let future): channel = try? await future.get()
        case .idle, .closed: channel = nil
        }
        guard let channel else { return }
        channel.triggerUserOutboundEvent(CloseWhenIdle(), promise: nil)
        try? await channel.closeFuture.get()
    }

    // MARK: Connection

    /// The open connection, connecting (once, shared by concurrent callers) when needed.
    private func channel() async throws(AuthzClientError) -> any Channel {
        let future: EventLoopFuture<any Channel> = try state.withLock { (state) throws(AuthzClientError) in
            switch state {
            case .closed:
                throw AuthzClientError(code: .cancelled, message: "the client is closed")
            case .connected(let channel) where channel.isActive:
                return channel.eventLoop.makeSucceededFuture(channel)
            case .connecting(let future):
                return future
            case .connected, .idle:
                let future = makeBootstrap().connect(unixDomainSocketPath: socketPath)
                state = .connecting(future)
                return future
            }
        }
        do {
            let channel = try await future.get()
            let keep = state.withLock { state in
                if case .connecting(let pending) = state, pending === future {
                    state = .connected(channel)
                }
                if case .closed = state { return false }
                return true
            }
            guard keep else {
                channel.close(promise: nil)
                throw AuthzClientError(code: .cancelled, message: "the client is closed")
            }
            return channel
        } catch let error as AuthzClientError {
            throw error
        } catch {
            state.withLock { state in
                if case .connecting(let pending) = state, pending === future { state = .idle }
            }
            throw AuthzClientError(code: .unavailable, message: "cannot connect to \(socketPath)", cause: error)
        }
    }

    private func makeBootstrap() -> ClientBootstrap {
        let maxResponseSize = configuration.maxResponseSize
        return ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(ByteToMessageHandler(ResponseFrameDecoder(maxPayloadLength: maxResponseSize)))
                    try operations.addHandler(ClientHandler())
                }
            }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(Int64(clamping: seconds) &* 1_000_000_000 &+ attoseconds / 1_000_000_000)
    }
}

// MARK: - One call

/// A call in flight: completed exactly once, by whoever gets there first (the response,
/// the connection closing, the timeout, cancellation).
final class PendingCall: Sendable {
    let id: UInt64
    let request: WireRequest
    let timeout: Duration?

    private enum State {
        case created
        case waiting(CheckedContinuation<WireResponse, any Error>)
        case completedEarly(Result<WireResponse, AuthzClientError>)
        case done
    }

    private let state = Mutex(State.created)

    init(request: WireRequest, timeout: Duration?) {
        self.id = request.callId
        self.request = request
        self.timeout = timeout
    }

    /// Installs the continuation; false (having resumed it) when already completed.
    func start(_ continuation: CheckedContinuation<WireResponse, any Error>) -> Bool {
        let early: Result<WireResponse, AuthzClientError>? = state.withLock { state in
            if case .completedEarly(let result) = state {
                state = .done
                return result
            }
            state = .waiting(continuation)
            return nil
        }
        guard let early else { return true }
        continuation.resume(with: early.mapError { $0 as any Error })
        return false
    }

    func complete(_ result: Result<WireResponse, AuthzClientError>) {
        let continuation: CheckedContinuation<WireResponse, any Error>? = state.withLock { state in
            switch state {
            case .created:
                state = .completedEarly(result)
                return nil
            case .waiting(let continuation):
                state = .done
                return continuation
            case .completedEarly, .done:
                return nil
            }
        }
        continuation?.resume(with: result.mapError { $0 as any Error })
    }
}

/// The cause of a call's failure when the connection went away before its answer: the
/// call may be sent again on a new connection.
struct ConnectionLost: Error, CustomStringConvertible {
    var underlying: (any Error)?

    var description: String { underlying.map { "\($0)" } ?? "connection lost" }
}

/// Drops a cancelled call's bookkeeping.
struct ForgetCall: Sendable {
    var id: UInt64
}

/// Close the connection once no call is in flight.
struct CloseWhenIdle: Sendable {}

// MARK: - Pipeline

/// Splits the byte stream into response payloads.
struct ResponseFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    let parser: FrameParser

    init(maxPayloadLength: Int) {
        parser = FrameParser(maxPayloadLength: maxPayloadLength)
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let parser = self.parser
        switch buffer.withUnsafeReadableBytes({ parser.parse($0) }) {
        case .needMoreData:
            return .needMoreData
        case .frame(let frame):
            buffer.moveReaderIndex(forwardBy: frame.payload.lowerBound)
            guard let payload = buffer.readSlice(length: frame.payload.count) else {
                throw AuthzClientError(code: .internal, message: "response frame decoder lost track of the buffer")
            }
            context.fireChannelRead(Self.wrapInboundOut(payload))
            return .continue
        case .error(let error):
            throw AuthzClientError(code: .internal, message: "the server sent a malformed frame: \(error.message)")
        }
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        let state = try decode(context: context, buffer: &buffer)
        if case .needMoreData = state { buffer.moveReaderIndex(to: buffer.writerIndex) }
        return state
    }
}

/// Matches responses to calls by call id; encodes requests; coalesces flushes.
final class ClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = PendingCall
    typealias OutboundOut = ByteBuffer

    private struct Entry {
        var call: PendingCall
        var timeout: Scheduled<Void>?
    }

    private var calls: [UInt64: Entry] = [:]
    private var flushScheduled = false
    private var closeWhenIdle = false
    /// Set once the connection is failing: new calls are refused with this error.
    private var failure: AuthzClientError?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let call = Self.unwrapOutboundIn(data)
        if failure != nil {
            // The connection is going away: the request is not sent.
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        var entry = Entry(call: call)
        if let timeout = call.timeout {
            let id = call.id
            entry.timeout = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
                guard let expired = self.calls.removeValue(forKey: id) else { return }
                expired.call.complete(
                    .failure(AuthzClientError(code: .deadlineExceeded, message: "no answer within \(timeout)")))
                self.closeIfIdle(context)
            }
        }
        calls[call.id] = entry
        let request = call.request
        let size = request.encodedSize()
        var buffer = context.channel.allocator.buffer(capacity: size)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { request.encode(into: $0) }
        context.write(Self.wrapOutboundOut(buffer), promise: promise)
        // One flush for every call written in this event-loop tick.
        if !flushScheduled {
            flushScheduled = true
            context.eventLoop.assumeIsolated().execute {
                self.flushScheduled = false
                context.flush()
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = Self.unwrapInboundIn(data)
        let decoded = payload.withUnsafeReadableBytes { bytes in
            Result { () throws(WireError) -> WireResponse in try WireResponse(decoding: bytes) }
        }
        switch decoded {
        case .success(let response):
            if let entry = calls.removeValue(forKey: response.callId) {
                entry.timeout?.cancel()
                entry.call.complete(.success(response))
                closeIfIdle(context)
            } else if response.callId == 0, response.status.code != .ok {
                // A connection-level error (a framing error, too many connections): the
                // server closes the connection after it.
                failAll(AuthzClientError(status: response.status), context)
            }
        // Otherwise: the answer to a call that timed out or was cancelled.
        case .failure(let error):
            failAll(AuthzClientError(code: .internal, message: "unreadable response: \(error.message)", cause: error), context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(
            AuthzClientError(
                code: .unavailable, message: "the connection to the server was closed", cause: ConnectionLost()),
            context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let failure =
            (error as? AuthzClientError)
            ?? AuthzClientError(
                code: .unavailable, message: "the connection to the server failed",
                cause: ConnectionLost(underlying: error))
        failAll(failure, context)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        switch event {
        case let forget as ForgetCall:
            if let entry = calls.removeValue(forKey: forget.id) { entry.timeout?.cancel() }
            promise?.succeed()
            closeIfIdle(context)
        case is CloseWhenIdle:
            closeWhenIdle = true
            promise?.succeed()
            closeIfIdle(context)
        default:
            context.triggerUserOutboundEvent(event, promise: promise)
        }
    }

    private func closeIfIdle(_ context: ChannelHandlerContext) {
        if closeWhenIdle, calls.isEmpty { context.close(promise: nil) }
    }

    private func failAll(_ error: AuthzClientError, _ context: ChannelHandlerContext) {
        if failure == nil { failure = error }
        let failed = calls
        calls.removeAll()
        for entry in failed.values {
            entry.timeout?.cancel()
            entry.call.complete(.failure(error))
        }
        context.close(promise: nil)
    }
}

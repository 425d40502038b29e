// The protocol of one client connection, decided in one place for every transport.
//
// A plain value: bytes and events go in (what was read, what was sent, the peer hung up,
// the clock ticked, the server drains), decisions come out (answer this frame, stop, fail
// the stream, close now, what to wait for). It never touches a socket, a buffer it does
// not borrow, a clock or a lock, so it is tested and fuzzed without any I/O, and both
// transports (epoll and SwiftNIO) only move bytes and timers through it.
//
// The rules it enforces:
// - Frames are answered in order. A request that must wait (a newer snapshot, a reload)
//   parks the connection: frames behind it stay unread in the input buffer and nothing more
//   is read until it is answered, so answers keep request order.
// - Back-pressure per frame: no frame is answered while the unsent output is at or above
//   the high-water mark, and reading resumes only once it falls to the low-water mark. The
//   output therefore never exceeds the high-water mark by more than one answer.
// - A framing error (bad flag, a length over the limit) means the stream cannot be trusted:
//   everything before it is answered, then the error (call id 0), then the connection closes.
// - Timeouts: a frame whose first byte arrived must be complete within `frameTimeout` (slow
//   senders cannot hold a connection); a connection with nothing owed in either direction
//   closes after `idleTimeout` without progress (reads and writes both count); a parked
//   request is answered at its deadline.
// - The peer hanging up (nothing can be sent any more) closes at once and withdraws a
//   parked request. The input ending (the client shut down its sending side) answers every
//   whole frame, then closes. Draining (graceful shutdown) answers a request waiting for a
//   snapshot version UNAVAILABLE at once, finishes the frame being received, then closes.

public import AuthzWire

/// The state machine of one connection. See the file comment for its rules.
public struct ConnectionCore: Sendable {
    public typealias Instant = ContinuousClock.Instant

    public struct Configuration: Sendable, Equatable {
        public var maxFrameSize: Int
        /// Close a connection without progress in either direction, and nothing owed, after this long.
        public var idleTimeout: Duration?
        /// A frame must be complete this long after its first byte arrived.
        public var frameTimeout: Duration?
        public var highWaterMark: Int
        public var lowWaterMark: Int

        public init(
            maxFrameSize: Int, idleTimeout: Duration?, frameTimeout: Duration?, highWaterMark: Int, lowWaterMark: Int
        ) {
            self.maxFrameSize = maxFrameSize
            self.idleTimeout = idleTimeout
            self.frameTimeout = frameTimeout
            self.highWaterMark = highWaterMark
            self.lowWaterMark = min(lowWaterMark, highWaterMark)
        }
    }

    /// What a parked request waits for.
    public enum Park: Sendable, Equatable {
        /// A snapshot at least as new as the request's `min_snapshot_version`, until `deadline`.
        case version(deadline: Instant)
        /// A Reload to finish.
        case reload
    }

    public enum Phase: Sendable, Equatable {
        /// Serving.
        case open
        /// Graceful shutdown: finish what was started, then close.
        case draining
        /// Send what is owed (ending with an error answer, if any), then close; read nothing more.
        case closing
        /// Closed: nothing more is read or sent.
        case closed
    }

    /// Why the connection closed or is closing, for the log.
    public enum CloseReason: Sendable, Equatable {
        /// Every answer owed was sent after the client stopped sending.
        case inputEnded
        /// Graceful shutdown, once nothing was owed.
        case drained
        /// No progress in either direction for `idleTimeout`, nothing owed.
        case idle
        /// A frame begun but not completed within `frameTimeout`.
        case slowFrame
        /// The byte stream broke the framing rules.
        case framingError
        /// The peer hung up (or the socket failed): nothing can be sent.
        case hungUp
        /// The server closed it (shutdown grace period over, cancellation).
        case closedByServer
    }

    /// The next step of `nextFrame`.
    public enum FrameStep: Sendable {
        /// Answer this frame (its payload lies at `payload` in the input given), then report
        /// with `answered(consumed:parked:)`.
        case answer(payload: Range<Int>, length: Int, receivedAt: Instant)
        /// The stream broke the framing rules: send `error` (call id 0) after everything
        /// already owed, discard the input, and close once it is sent.
        case failStream(WireError)
        /// Nothing to answer now (no whole frame, parked, throttled, or closing).
        case stop
    }

    /// What a tick asks of the connection.
    public enum TickStep: Sendable {
        case none
        /// The parked request's deadline passed: withdraw it and answer with what is in
        /// service, then call `unparked`.
        case parkedDeadlinePassed
        /// Send `error` (call id 0), then close (the phase is `.closing`).
        case failStream(WireError, CloseReason)
        /// Close now.
        case close(CloseReason)
    }

    /// What draining asks of the connection.
    public enum DrainStep: Sendable, Equatable {
        case none
        /// A request waits for a snapshot version: withdraw it and answer it UNAVAILABLE
        /// (the server is shutting down), then call `unparked`.
        case answerParkedUnavailable
    }

    public let configuration: Configuration
    private let parser: FrameParser
    public private(set) var phase = Phase.open
    public private(set) var parked: Park?
    /// The client shut down its sending side: nothing more will arrive.
    public private(set) var inputEnded = false
    /// Reading paused: too much output is unsent.
    public private(set) var throttled = false
    /// Why the connection closed, once it did (or is closing).
    public private(set) var closeReason: CloseReason?
    /// The last read or write progress.
    public private(set) var lastActivity: Instant
    /// When the last read arrived: frames still in the input buffer were read then (their
    /// deadlines run from it).
    public private(set) var lastRead: Instant
    /// When the first byte of the incomplete frame at the head of the input arrived; nil
    /// when the input holds no partial frame.
    public private(set) var frameStartedAt: Instant?
    /// What `unreadByPeer` said at the last idle check.
    private var lastUnreadByPeer: Int?

    public init(configuration: Configuration, now: Instant) {
        self.configuration = configuration
        self.parser = FrameParser(maxPayloadLength: configuration.maxFrameSize)
        self.lastActivity = now
        self.lastRead = now
    }

    // MARK: - Events

    /// Bytes were read (appended to the input buffer).
    public mutating func read(now: Instant) {
        lastActivity = now
        lastRead = now
    }

    /// The client shut down its sending side (read returned 0).
    public mutating func endOfInput() {
        inputEnded = true
    }

    /// The peer hung up or the socket failed. Returns the parked request to withdraw, if any.
    @discardableResult
    public mutating func hangUp() -> Park? {
        close(.hungUp)
    }

    /// The server closes the connection now. Returns the parked request to withdraw, if any.
    @discardableResult
    public mutating func close(_ reason: CloseReason) -> Park? {
        guard phase != .closed else { return nil }
        let withdrawn = parked
        parked = nil
        phase = .closed
        if closeReason == nil { closeReason = reason }
        return withdrawn
    }

    /// The next frame to answer from `input` (the unconsumed input bytes), given the output
    /// not yet sent.
    public mutating func nextFrame(input: UnsafeRawBufferPointer, outputPending: Int, now: Instant) -> FrameStep {
        guard mayAnswer else { return .stop }
        if outputPending >= configuration.highWaterMark {
            throttled = true
            return .stop
        }
        switch parser.parse(input) {
        case .needMoreData:
            if input.isEmpty {
                frameStartedAt = nil
            } else if frameStartedAt == nil {
                frameStartedAt = lastRead
            }
            return .stop
        case .frame(let frame):
            frameStartedAt = nil
            return .answer(payload: frame.payload, length: frame.length, receivedAt: lastRead)
        case .error(let error):
            phase = .closing
            closeReason = .framingError
            frameStartedAt = nil
            return .failStream(error)
        }
    }

    /// The frame from `nextFrame` was answered (or parked, waiting for `parked`).
    public mutating func answered(parked park: Park?) {
        guard phase != .closed else { return }
        parked = park
    }

    /// Whether frames may be answered now (open or draining, nothing parked): what a
    /// transport's fast path checks before answering a run of plain checks itself.
    public var mayAnswer: Bool {
        (phase == .open || phase == .draining) && parked == nil
    }

    /// The parked request got its answer (appended to the output).
    public mutating func unparked() {
        parked = nil
    }

    /// Output was sent: `sent` bytes, `outputPending` left.
    public mutating func wrote(sent: Int, outputPending: Int, now: Instant) {
        if sent > 0 { lastActivity = now }
        if outputPending <= configuration.lowWaterMark {
            // Reading resumes: a frame begun before has its time from now (see `tick`).
            if throttled, frameStartedAt != nil { frameStartedAt = now }
            throttled = false
        } else if outputPending >= configuration.highWaterMark {
            throttled = true
        }
    }

    /// Graceful shutdown begins.
    public mutating func drain() -> DrainStep {
        guard phase == .open else { return .none }
        phase = .draining
        if case .version = parked { return .answerParkedUnavailable }
        return .none
    }

    /// Timers: the parked deadline, the frame timeout, the idle timeout. `unreadByPeer`
    /// tells how many bytes the kernel holds that the client has not read yet (nil when
    /// unknown); it is asked only when the idle timeout ran out, because a client reading
    /// what the kernel buffered makes progress no event reports (the socket becomes
    /// writable again only once most of it is read).
    public mutating func tick(
        now: Instant, inputCount: Int, outputPending: Int, unreadByPeer: () -> Int? = { nil }
    ) -> TickStep {
        guard phase != .closed else { return .none }
        if case .version(let deadline) = parked, now >= deadline { return .parkedDeadlinePassed }
        if frameStartedAt != nil, !wantsRead {
            // The rest of the frame cannot arrive while the server does not read (its answers
            // wait for the client to read them, or a request is parked): the frame's time
            // counts from when reading resumes, not against the client.
            frameStartedAt = now
        }
        if phase != .closing, let frameTimeout = configuration.frameTimeout, let started = frameStartedAt,
            inputCount > 0, now - started >= frameTimeout
        {
            phase = .closing
            closeReason = .slowFrame
            frameStartedAt = nil
            return .failStream(
                WireError(
                    .deadlineExceeded,
                    "a frame was begun and not completed within \(frameTimeout) (--frame-timeout): closing the connection"),
                .slowFrame)
        }
        if parked == nil, let idleTimeout = configuration.idleTimeout, now - lastActivity >= idleTimeout {
            if let unread = unreadByPeer(), unread > 0, unread != lastUnreadByPeer {
                // The client read some of what the kernel holds for it since we last
                // looked (or this is the first look): progress, not idleness.
                lastUnreadByPeer = unread
                lastActivity = now
                return .none
            }
            // Nothing moved in either direction for the whole timeout: the client neither
            // sends nor reads what it is owed.
            close(.idle)
            return .close(.idle)
        }
        return .none
    }

    // MARK: - What the transport should do

    /// Whether to read from the socket.
    public var wantsRead: Bool {
        mayAnswer && !inputEnded && !throttled
    }

    /// Whether the connection is done and should close now, given the unconsumed input and
    /// the output not yet sent.
    public mutating func shouldClose(input: UnsafeRawBufferPointer, outputPending: Int) -> Bool {
        switch phase {
        case .closed:
            return true
        case .closing:
            guard outputPending == 0 else { return false }
            close(closeReason ?? .framingError)
            return true
        case .open, .draining:
            guard parked == nil, outputPending == 0 else { return false }
            if inputEnded {
                // Once every whole frame is answered; a truncated last frame is dropped.
                if case .frame = parser.parse(input) { return false }
                close(.inputEnded)
                return true
            }
            if phase == .draining, input.isEmpty {
                close(.drained)
                return true
            }
            return false
        }
    }

    /// When `tick` next has something to do, or nil.
    public func nextDeadline(outputPending: Int) -> Instant? {
        guard phase != .closed else { return nil }
        var next: Instant? = nil
        func consider(_ instant: Instant) { next = next.map { min($0, instant) } ?? instant }
        if case .version(let deadline) = parked { consider(deadline) }
        if phase != .closing, let frameTimeout = configuration.frameTimeout, let started = frameStartedAt {
            consider(started + frameTimeout)
        }
        if parked == nil, let idleTimeout = configuration.idleTimeout { consider(lastActivity + idleTimeout) }
        return next
    }
}

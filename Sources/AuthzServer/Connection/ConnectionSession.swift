// One connection as both transports serve it: its byte buffers, its `ConnectionCore` (which
// decides), and the answering of the frames the core lets through (RequestProcessor, the
// fast path, parking for a snapshot version or a reload). No system calls: the transport
// reads into `readSpace()`, sends `pendingOutput`, reports what happened, and asks
// `wantsRead`, `shouldClose()` and `nextDeadline` what to do next.
//
// Confined to the connection's event loop. A parked request is resumed through the
// transport's `ConnectionWaker`, which runs the resumption on that loop.

import AuthzConnection
import AuthzEngine
import AuthzWire
import Logging

/// How a parked request's resumption reaches the connection's own loop: the transport runs
/// `work` there on the session, if the connection is still open, then does an I/O pass.
struct ConnectionWaker: Sendable {
    let schedule: @Sendable (_ work: @escaping @Sendable (ConnectionSession) -> Void) -> Void
}

/// A loop's scratch for answering runs of plain checks together (epoll's fast path).
final class FastPathScratch {
    let decoder = FastPathDecoder()
    let run = FastRun(capacity: 32)
}

final class ConnectionSession {
    let id: UInt64
    let context: ServerContext
    // The session lives on one loop thread and never hands out inout access to its state
    // across a call that could reach it again: no dynamic exclusivity checks (Package.swift).
    @exclusivity(unchecked) private(set) var core: ConnectionCore
    @exclusivity(unchecked) private var input: RawBytes
    @exclusivity(unchecked) private var output: RawBytes
    /// Bytes handed to the transport's own write queue and not yet written (NIO).
    @exclusivity(unchecked) private var inFlight = 0
    private let fast: FastPathScratch?
    private let waker: ConnectionWaker
    private let peer: () -> PeerCredentials?
    /// Bytes sent that the client has not read yet (the kernel's queue), or nil.
    private let unreadByPeer: () -> Int?
    @exclusivity(unchecked) private var parkedRequest: WireRequest?
    @exclusivity(unchecked) private var parkedWaiter: UInt64 = 0
    /// Tells apart the reloads this connection parked on.
    @exclusivity(unchecked) private var reloadToken: UInt64 = 0
    @exclusivity(unchecked) private var unreportedRequests: UInt64 = 0
    @exclusivity(unchecked) private var batchSnapshot: Snapshot?
    @exclusivity(unchecked) private var batchSnapshotRead = false
    @exclusivity(unchecked) private var errorLogged = false
    /// The loop's metrics shard; nil when the server keeps no metrics.
    private let stats: RequestStats?
    /// The decision log and the loop's ring; nil when the server keeps no decision log.
    private let decisions: DecisionRecorder?
    /// The peer's pid and uid for the decision log, read once.
    @exclusivity(unchecked) private var logPeer: (pid: Int32, uid: UInt32)?
    /// Requests answered in this pass of `process` (their duration is observed at its end).
    @exclusivity(unchecked) private var answeredInPass: UInt64 = 0
    /// When the bytes answered in this pass were read (the first read since the last pass).
    @exclusivity(unchecked) private var readAt: ContinuousClock.Instant?
    /// The parked request's method and arrival, for the metrics when it is answered.
    @exclusivity(unchecked) private var parkedMethod = RequestMethod.invalid
    @exclusivity(unchecked) private var parkedReceivedAt: ContinuousClock.Instant?

    static let baseInputCapacity = 16 * 1024
    static let baseOutputCapacity = 16 * 1024

    init(
        id: UInt64, context: ServerContext, now: ContinuousClock.Instant, fastPath: FastPathScratch?,
        waker: ConnectionWaker, peer: @escaping () -> PeerCredentials?, unreadByPeer: @escaping () -> Int? = { nil },
        stats: RequestStats? = nil, decisions: DecisionRecorder? = nil
    ) {
        self.id = id
        self.context = context
        let configuration = context.configuration
        core = ConnectionCore(
            configuration: .init(
                maxFrameSize: configuration.maxFrameSize, idleTimeout: configuration.idleTimeout,
                frameTimeout: configuration.frameTimeout, highWaterMark: configuration.writeBufferHighWaterMark,
                lowWaterMark: configuration.writeBufferLowWaterMark),
            now: now)
        input = RawBytes(capacity: Self.baseInputCapacity)
        output = RawBytes(capacity: 0)
        fast = fastPath
        self.waker = waker
        self.peer = peer
        self.unreadByPeer = unreadByPeer
        self.stats = stats
        self.decisions = decisions
    }

    deinit {
        input.release()
        output.release()
    }

    // MARK: - Input

    /// Free space to read into: at least enough for the largest frame allowed.
    func readSpace() -> UnsafeMutableRawBufferPointer {
        if input.available == 0 {
            input.compact()
            if input.available == 0 {
                input.reserve(min(input.capacity * 2, context.configuration.maxFrameSize + FrameHeader.size))
            }
        }
        return UnsafeMutableRawBufferPointer(start: input.end, count: input.available)
    }

    /// `count` bytes were read into `readSpace()`.
    func didRead(_ count: Int, now: ContinuousClock.Instant) {
        input.count += count
        if stats != nil, readAt == nil { readAt = now }
        core.read(now: now)
    }

    /// Bytes read by the transport into its own buffer (NIO).
    func received(_ bytes: UnsafeRawBufferPointer, now: ContinuousClock.Instant) {
        input.append(bytes)
        if stats != nil, readAt == nil { readAt = now }
        core.read(now: now)
    }

    /// The client shut down its sending side.
    func endOfInput() {
        core.endOfInput()
    }

    // MARK: - Output

    /// The bytes to send.
    var pendingOutput: UnsafeRawBufferPointer { output.bytes }

    /// Answers owed and not yet written: in the output buffer or the transport's queue.
    var outputOwed: Int { output.count + inFlight }

    /// `count` bytes of `pendingOutput` were written to the socket.
    func didSend(_ count: Int, now: ContinuousClock.Instant) {
        output.consume(count)
        if output.count == 0 { output.shrinkIfEmpty(to: Self.baseOutputCapacity) }
        core.wrote(sent: count, outputPending: outputOwed, now: now)
    }

    /// The transport took `count` bytes of `pendingOutput` into its own queue (NIO); report
    /// them with `delivered` once written.
    func handedOff(_ count: Int) {
        output.consume(count)
        inFlight += count
        if output.count == 0 { output.shrinkIfEmpty(to: Self.baseOutputCapacity) }
    }

    func delivered(_ count: Int, now: ContinuousClock.Instant) {
        inFlight -= count
        core.wrote(sent: count, outputPending: outputOwed, now: now)
    }

    /// The buffers' sizes (they return to their base sizes after a large frame or answer).
    var inputCapacity: Int { input.capacity }
    var outputCapacity: Int { output.capacity }

    // MARK: - What the transport does next

    var wantsRead: Bool { core.wantsRead }

    func shouldClose() -> Bool {
        core.shouldClose(input: input.bytes, outputPending: outputOwed)
    }

    var isClosed: Bool { core.phase == .closed }

    var nextDeadline: ContinuousClock.Instant? { core.nextDeadline(outputPending: outputOwed) }

    // MARK: - Answering

    /// Answers every frame the core lets through: until one parks, the output reaches the
    /// high-water mark, or no whole frame is left.
    func process(now: ContinuousClock.Instant) {
        answering: while true {
            if fast != nil, input.count > FrameHeader.size, core.mayAnswer,
                output.count < core.configuration.highWaterMark, answerFastRun(now: now)
            {
                continue
            }
            switch core.nextFrame(input: input.bytes, outputPending: outputOwed, now: now) {
            case .stop:
                break answering
            case .answer(let payload, let length, let receivedAt):
                respond(to: UnsafeRawBufferPointer(rebasing: input.bytes[payload]), receivedAt: receivedAt, now: now)
                input.consume(length)
            case .failStream(let error):
                // The stream cannot be trusted: answer once with call id 0, then close.
                logOnce(.notice, "closing connection: \(error.code.name): \(error.message)")
                input.consume(input.count)
                append(WireResponse(callId: 0, error: error))
                record(.invalid, error.code)
                break answering
            }
        }
        endBatch(now: now)
    }

    /// End of a batch of answers: drop the batch's snapshot reference, count the requests,
    /// observe their duration: one clock read per pass, from when its bytes were read
    /// (the loop's wake-up, on epoll) to now, when their answers are queued.
    private func endBatch(now: ContinuousClock.Instant) {
        if let stats {
            if answeredInPass > 0 {
                let elapsed = ContinuousClock.now - (readAt ?? now)
                stats.observeDuration(nanoseconds: UInt64(elapsed.wholeNanoseconds), count: answeredInPass)
                answeredInPass = 0
            }
            readAt = nil
        }
        if batchSnapshotRead {
            batchSnapshot = nil
            batchSnapshotRead = false
        }
        if unreportedRequests > 0 { reportRequests() }
        if input.count == 0, input.capacity > Self.baseInputCapacity { input.shrinkIfEmpty(to: Self.baseInputCapacity) }
    }

    /// Whether unanswered bytes wait in the input (frames held back by back-pressure, or
    /// the start of one): after sending, `process` has work only then.
    var holdsInput: Bool { input.count > 0 }

    private func respond(to payload: UnsafeRawBufferPointer, receivedAt: ContinuousClock.Instant, now: ContinuousClock.Instant) {
        unreportedRequests += 1
        let request: WireRequest
        do throws(WireRequestError) {
            request = try WireRequest(decoding: payload, maxBatchChecks: context.configuration.maxBatchSize)
        } catch {
            append(WireResponse(replyingTo: error))
            record(.invalid, error.error.code)
            core.answered(parked: nil)
            return
        }
        if request.deadlineMs > 0, receivedAt + .milliseconds(Int64(request.deadlineMs)) <= now {
            let response = RequestProcessor.deadlinePassedInQueue(request)
            append(response)
            record(request, response)
            core.answered(parked: nil)
            return
        }
        if case .status = request.method { reportRequests() }
        switch RequestProcessor.dispose(request, snapshot: readBatchSnapshot(), server: context) {
        case .respond(let response):
            append(response)
            record(request, response)
            core.answered(parked: nil)
        case .waitForVersion(let version):
            waitForVersion(version, request, receivedAt: receivedAt)
        case .reload:
            reload(request, receivedAt: receivedAt)
        }
    }

    // MARK: - Metrics

    /// Counts a request answered in this pass.
    @inline(__always)
    private func record(_ request: WireRequest, _ response: WireResponse) {
        if let decisions { decisions.record(request, response, peer: peerForLog(), receivedAt: core.lastRead) }
        guard let stats else { return }
        let method = RequestMethod(request.method)
        if case .batch(let checks) = request.method { stats.observeBatch(checks: checks.count) }
        stats.answered(method, response.status.code)
        answeredInPass += 1
    }

    @inline(__always)
    private func record(_ method: RequestMethod, _ code: RPCCode) {
        guard let stats else { return }
        stats.answered(method, code)
        answeredInPass += 1
    }

    /// The peer's pid and uid (0 when unreadable), read once per connection.
    private func peerForLog() -> (pid: Int32, uid: UInt32) {
        if let logPeer { return logPeer }
        let credentials = peer()
        let found = (pid: credentials?.pid ?? 0, uid: credentials?.uid ?? 0)
        logPeer = found
        return found
    }

    /// Counts a parked request answered now, with its own duration.
    private func recordUnparked(_ response: WireResponse) {
        guard let receivedAt = parkedReceivedAt else { return }
        parkedReceivedAt = nil
        guard let stats else { return }
        stats.answered(parkedMethod, response.status.code)
        stats.observeDuration(nanoseconds: UInt64((ContinuousClock.now - receivedAt).wholeNanoseconds), count: 1)
    }

    /// The snapshot this batch answers from, read once per batch.
    private func readBatchSnapshot() -> Snapshot? {
        if !batchSnapshotRead {
            batchSnapshot = context.snapshots.snapshot
            batchSnapshotRead = true
        }
        return batchSnapshot
    }

    private func append(_ response: WireResponse) {
        let size = response.encodedSize()
        output.reserve(output.count + size)
        output.count += response.encode(into: UnsafeMutableRawBufferPointer(start: output.end, count: size))
    }

    private func reportRequests() {
        guard unreportedRequests > 0 else { return }
        context.requestsServed.add(unreportedRequests, ordering: .relaxed)
        unreportedRequests = 0
    }

    // MARK: - The fast path

    /// The hot path for pipelined traffic: the run of plain single checks at the head of
    /// the input (up to 32), answered in phases so their memory accesses overlap: decode
    /// them all, load every id's index slot, look them all up and load their records, then
    /// decide and encode each in order. False when the first frame is not such a check
    /// (incomplete, another method, an error, a consistency token the snapshot does not
    /// satisfy, a deadline passed while it was queued, fail-closed): `process` takes it the general way.
    private func answerFastRun(now: ContinuousClock.Instant) -> Bool {
        guard let fast, let snapshot = readBatchSnapshot(), context.failClosedReason() == nil else { return false }
        let decoder = fast.decoder
        let run = fast.run
        let parser = FrameParser(maxPayloadLength: context.configuration.maxFrameSize)
        let bytes = input.bytes
        var count = 0
        var consumed = 0
        while count < run.capacity {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[consumed...])
            guard case .frame(let frame) = parser.parse(rest) else { break }
            let payload = UnsafeRawBufferPointer(rebasing: rest[frame.payload])
            guard let check = decoder.decode(payload, keepingEarlier: count > 0),
                check.minSnapshotVersion <= snapshot.version,
                // Queued behind a waiting request past its deadline: DEADLINE_EXCEEDED, the general way.
                check.deadlineMs == 0 || core.lastRead + .milliseconds(Int64(check.deadlineMs)) > now
            else { break }
            run.checks[count] = check
            count += 1
            consumed += frame.length
        }
        guard count > 0 else { return false }
        var sink: UInt64 = 0
        // The run's checks by kind, for the metrics (counted in registers here, where the
        // kind is looked at anyway; added to the loop's shard once per run).
        var permissions: UInt64 = 0
        var seats: UInt64 = 0
        for index in 0..<count {
            switch run.checks[index].kind {
            case .effectivePermission(let user, let project, _):
                sink &+= snapshot.touch(userUTF8: user, projectUTF8: project)
                permissions &+= 1
            case .canUse(let user, let asset, _, _):
                sink &+= snapshot.touch(userUTF8: user, assetUTF8: asset)
            case .seatType(let user):
                sink &+= snapshot.touch(userUTF8: user, projectUTF8: UnsafeRawBufferPointer(start: nil, count: 0))
                seats &+= 1
            }
        }
        for index in 0..<count {
            let keys = FastKeys(run.checks[index], in: snapshot)
            run.keys[index] = keys
            // The records the decision starts from: the user and the project, if any.
            if case .effectivePermission = run.checks[index].kind {
                sink &+= snapshot.touch(keys.user, keys.entity)
            } else {
                sink &+= snapshot.touch(keys.user, keys.project)
            }
        }
        run.sink &+= sink
        output.reserve(output.count + count * FastPathEncoder.maxFrameLength)
        // The decision log: one clock read per run (its checks arrived and are answered together).
        let logging = decisions.map {
            (recorder: $0, peer: peerForLog(), latency: (ContinuousClock.now - core.lastRead).wholeNanoseconds,
             time: DecisionLog.unixNanos())
        }
        for index in 0..<count {
            let check = run.checks[index]
            let answer = RequestProcessor.answer(check, keys: run.keys[index], in: snapshot)
            output.count += FastPathEncoder.encode(
                callId: check.callId, snapshotVersion: snapshot.version, answer: answer, into: output.end)
            if let logging {
                logging.recorder.record(
                    check, answer, snapshotVersion: snapshot.version, peer: logging.peer, latencyNanos: logging.latency,
                    unixNanos: logging.time)
            }
        }
        if let stats {
            let all = UInt64(count)
            stats.answered(.effectivePermission, .ok, count: permissions)
            stats.answered(.canUse, .ok, count: all &- permissions &- seats)
            stats.answered(.seatType, .ok, count: seats)
            answeredInPass &+= all
        }
        unreportedRequests += UInt64(count)
        input.consume(consumed)
        return true
    }

    // MARK: - Parking

    private func waitForVersion(_ version: UInt64, _ request: WireRequest, receivedAt: ContinuousClock.Instant) {
        if core.phase == .draining {
            // No newer snapshot is waited for while the server shuts down.
            let response = Self.shuttingDown(request)
            append(response)
            record(request, response)
            core.answered(parked: nil)
            return
        }
        let deadline = receivedAt + RequestProcessor.waitBudget(request, context.configuration)
        context.reloader?.requestCheck()
        let waker = self.waker
        let (ready, waiter) = context.snapshots.waitForVersion(version) { _ in
            waker.schedule { $0.versionArrived() }
        }
        if let ready {
            // A newer snapshot than the batch's was installed since the batch began: the
            // rest of the batch answers from it too, so no later answer on this connection
            // names an older version than this one.
            batchSnapshot = ready
            batchSnapshotRead = true
            let response = RequestProcessor.answerAfterWaiting(request, snapshot: ready, server: context)
            append(response)
            record(request, response)
            core.answered(parked: nil)
            return
        }
        parkedRequest = request
        parkedWaiter = waiter
        if stats != nil || decisions != nil {
            parkedMethod = RequestMethod(request.method)
            parkedReceivedAt = receivedAt
        }
        core.answered(parked: .version(deadline: deadline))
    }

    /// A snapshot new enough was installed (on the connection's loop).
    func versionArrived() {
        guard case .version = core.parked, let request = parkedRequest else { return }
        unpark(with: RequestProcessor.answerAfterWaiting(request, snapshot: context.snapshots.snapshot, server: context))
    }

    private func reload(_ request: WireRequest, receivedAt: ContinuousClock.Instant) {
        let callId = request.callId
        let reloader: SnapshotReloader
        switch RequestProcessor.reloader(for: callId, in: context, peer: peer()) {
        case .success(let allowed): reloader = allowed
        case .failure(let refused):
            append(refused.response)
            record(.reload, refused.response.status.code)
            core.answered(parked: nil)
            return
        }
        if stats != nil {
            parkedMethod = .reload
            parkedReceivedAt = receivedAt
        }
        reloadToken &+= 1
        let token = reloadToken
        core.answered(parked: .reload)
        let waker = self.waker
        reloader.reload { outcome in
            let response = RequestProcessor.reloadResponse(callId: callId, outcome: outcome)
            waker.schedule { $0.reloadFinished(token: token, response) }
        }
    }

    /// The Reload this connection parked on finished (on the connection's loop).
    func reloadFinished(token: UInt64, _ response: WireResponse) {
        guard core.parked == .reload, token == reloadToken else { return }
        unpark(with: response)
    }

    private func unpark(with response: WireResponse) {
        let request = parkedRequest
        parkedRequest = nil
        parkedWaiter = 0
        append(response)
        if let decisions, let request, let receivedAt = parkedReceivedAt {
            decisions.record(request, response, peer: peerForLog(), receivedAt: receivedAt)
        }
        recordUnparked(response)
        core.unparked()
    }

    /// Withdraws a parked version wait from the snapshot holder. False when it was resumed
    /// meanwhile: its resumption is on the way and answers it.
    private func withdrawWait() -> Bool {
        guard parkedWaiter != 0 else { return false }
        return context.snapshots.cancelWait(parkedWaiter)
    }

    private static func shuttingDown(_ request: WireRequest) -> WireResponse {
        WireResponse(
            callId: request.callId,
            error: WireError(.unavailable, "the server is shutting down: no newer snapshot will be loaded for this request"))
    }

    // MARK: - Timers, shutdown, errors

    /// Runs the core's timers. Returns true when something changed (answer, close).
    func tick(now: ContinuousClock.Instant) -> Bool {
        switch core.tick(now: now, inputCount: input.count, outputPending: outputOwed, unreadByPeer: unreadByPeer) {
        case .none:
            return false
        case .parkedDeadlinePassed:
            if withdrawWait(), let request = parkedRequest {
                unpark(with: RequestProcessor.answerAfterWaiting(request, snapshot: context.snapshots.snapshot, server: context))
            }
            return true
        case .failStream(let error, _):
            logOnce(.info, "closing connection: \(error.message)")
            input.consume(input.count)
            append(WireResponse(callId: 0, error: error))
            return true
        case .close(let reason):
            logClose(reason)
            return true
        }
    }

    /// Graceful shutdown: answer a request waiting for a snapshot version UNAVAILABLE,
    /// finish the frame being received, then close.
    func drain() {
        switch core.drain() {
        case .none:
            break
        case .answerParkedUnavailable:
            if withdrawWait(), let request = parkedRequest {
                unpark(with: Self.shuttingDown(request))
            }
        }
    }

    /// The peer hung up or the socket failed: nothing more can be sent.
    func hangUp(_ message: String? = nil) {
        if let message { logOnce(.info, message) }
        if case .version = core.hangUp() { _ = withdrawWait() }
        reportRequests()
    }

    /// The server closes the connection now (shutdown grace period over).
    func closeNow() {
        if case .version = core.close(.closedByServer) { _ = withdrawWait() }
        reportRequests()
    }

    private func logClose(_ reason: ConnectionCore.CloseReason) {
        switch reason {
        case .idle where input.count > 0:
            let timeout = context.configuration.idleTimeout.map { "\($0)" } ?? "the idle timeout"
            logOnce(.info, "closing connection: idle for \(timeout) in the middle of a frame")
        case .idle:
            context.logger.debug("closing idle connection", metadata: ["connection": "\(id)"])
        default:
            break
        }
    }

    func logOnce(_ level: Logger.Level, _ message: @autoclosure () -> String) {
        guard !errorLogged else { return }
        errorLogged = true
        context.logger.log(level: level, "\(message())", metadata: ["connection": "\(id)"])
    }
}

/// A loop's scratch for `answerFastRun`: the decoded checks of one run and their keys.
final class FastRun {
    let capacity: Int
    let checks: UnsafeMutablePointer<FastCheck>
    let keys: UnsafeMutablePointer<FastKeys>
    /// Where the touched words go, so the loads are not optimised away.
    @exclusivity(unchecked) var sink: UInt64 = 0

    init(capacity: Int) {
        self.capacity = capacity
        checks = .allocate(capacity: capacity)
        keys = .allocate(capacity: capacity)
    }

    deinit {
        checks.deallocate()
        keys.deallocate()
    }
}

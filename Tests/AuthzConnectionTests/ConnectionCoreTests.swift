// The connection core without sockets: bytes and events in, decisions out.

import AuthzConnection
import AuthzWire
import Testing

private let t0 = ContinuousClock.now

private func at(_ milliseconds: Int) -> ContinuousClock.Instant { t0 + .milliseconds(milliseconds) }

private func core(
    idle: Duration? = .seconds(10), frame: Duration? = .seconds(2), high: Int = 1000, low: Int = 500
) -> ConnectionCore {
    ConnectionCore(
        configuration: .init(maxFrameSize: 1024, idleTimeout: idle, frameTimeout: frame, highWaterMark: high, lowWaterMark: low),
        now: t0)
}

/// A frame with `payload` bytes of payload.
private func frame(_ payload: Int) -> [UInt8] {
    var bytes: [UInt8] = []
    FrameHeader.append(payloadLength: payload, to: &bytes)
    return bytes + [UInt8](repeating: 7, count: payload)
}

private func next(_ core: inout ConnectionCore, _ input: [UInt8], pending: Int = 0, now: Int = 0) -> ConnectionCore.FrameStep {
    input.withUnsafeBytes { core.nextFrame(input: $0, outputPending: pending, now: at(now)) }
}

private func shouldClose(_ core: inout ConnectionCore, _ input: [UInt8], pending: Int = 0) -> Bool {
    input.withUnsafeBytes { core.shouldClose(input: $0, outputPending: pending) }
}

@Suite("Connection core (no sockets)")
struct ConnectionCoreTests {
    @Test func answersWholeFramesInOrderAndWaitsForTheRest() {
        var c = core()
        c.read(now: at(1))
        let input = frame(3) + frame(2) + [0, 0, 0]
        guard case .answer(let payload, let length, let receivedAt) = next(&c, input) else {
            Issue.record("expected an answer")
            return
        }
        #expect(payload == 5..<8 && length == 8 && receivedAt == at(1))
        c.answered(parked: nil)
        guard case .answer(_, let second, _) = next(&c, Array(input[8...])) else {
            Issue.record("expected a second answer")
            return
        }
        #expect(second == 7)
        c.answered(parked: nil)
        guard case .stop = next(&c, [0, 0, 0]) else {
            Issue.record("a partial header is not a frame")
            return
        }
        #expect(c.frameStartedAt == at(1))
    }

    @Test func aParkedRequestHoldsTheFramesBehindItAndStopsReading() {
        var c = core()
        c.read(now: at(0))
        let input = frame(1) + frame(1)
        guard case .answer = next(&c, input) else { Issue.record("expected an answer"); return }
        c.answered(parked: .version(deadline: at(500)))
        #expect(!c.wantsRead)
        guard case .stop = next(&c, Array(input[6...])) else { Issue.record("parked: nothing answered"); return }
        #expect(!shouldClose(&c, []), "a parked request is owed an answer")
        guard case .parkedDeadlinePassed = c.tick(now: at(500), inputCount: 6, outputPending: 0) else {
            Issue.record("the deadline passes at 500 ms"); return
        }
        c.unparked()
        #expect(c.wantsRead)
        guard case .answer = next(&c, Array(input[6...])) else { Issue.record("then the next frame"); return }
    }

    @Test func backPressureIsCheckedPerFrame() {
        var c = core(high: 1000, low: 500)
        let input = frame(1) + frame(1)
        guard case .answer = next(&c, input, pending: 999) else { Issue.record("under the mark: answer"); return }
        c.answered(parked: nil)
        guard case .stop = next(&c, Array(input[6...]), pending: 1000) else {
            Issue.record("at the high-water mark: no more answers"); return
        }
        #expect(c.throttled && !c.wantsRead)
        c.wrote(sent: 400, outputPending: 600, now: at(1))
        #expect(c.throttled, "still above the low-water mark")
        c.wrote(sent: 100, outputPending: 500, now: at(2))
        #expect(!c.throttled && c.wantsRead)
    }

    @Test func aFramingErrorAnswersWhatCameBeforeThenCloses() {
        var c = core()
        let bad: [UInt8] = [1, 0, 0, 0, 1, 0]  // compressed flag
        guard case .failStream(let error) = next(&c, bad) else { Issue.record("bad flag"); return }
        #expect(error.code == .unimplemented || error.code == .invalidArgument || error.code == .resourceExhausted)
        #expect(c.phase == .closing && !c.wantsRead)
        #expect(!shouldClose(&c, [], pending: 10), "the answers owed go out first")
        #expect(shouldClose(&c, [], pending: 0))
        #expect(c.closeReason == .framingError)
        let oversized: [UInt8] = [0, 0, 0, 0x10, 0]
        var d = core()
        guard case .failStream(let tooLong) = next(&d, oversized) else { Issue.record("too long"); return }
        #expect(tooLong.code == .resourceExhausted)
    }

    @Test func aSlowFrameIsCutOffAtTheFrameTimeout() {
        var c = core(idle: .seconds(100), frame: .milliseconds(300))
        c.read(now: at(0))
        guard case .stop = next(&c, [0, 0, 0, 0, 20, 1], now: 0) else { Issue.record("partial"); return }
        // Bytes keep trickling in: activity, but the frame is still not complete.
        c.read(now: at(200))
        guard case .stop = next(&c, [0, 0, 0, 0, 20, 1, 2], now: 200) else { Issue.record("partial"); return }
        guard case .none = c.tick(now: at(299), inputCount: 7, outputPending: 0) else { Issue.record("not yet"); return }
        guard case .failStream(let error, .slowFrame) = c.tick(now: at(300), inputCount: 7, outputPending: 0) else {
            Issue.record("the frame timeout"); return
        }
        #expect(error.code == .deadlineExceeded)
        #expect(shouldClose(&c, []))
        #expect(c.nextDeadline(outputPending: 0) == nil)
    }

    @Test func theFrameTimeoutDoesNotRunWhileTheServerIsNotReading() {
        // A client pipelines more than fits before the high-water mark: the server stops
        // reading with a frame half in. That frame cannot complete until the client reads
        // its answers and the server reads again; it is not a slow sender.
        var c = core(idle: .seconds(100), frame: .milliseconds(300), high: 1000, low: 500)
        c.read(now: at(0))
        guard case .stop = next(&c, [0, 0, 0, 0, 20, 1], now: 0) else { Issue.record("partial"); return }
        c.wrote(sent: 0, outputPending: 2000, now: at(10))  // answers pile up: throttled
        #expect(!c.wantsRead)
        guard case .none = c.tick(now: at(5000), inputCount: 6, outputPending: 2000) else {
            Issue.record("not cut off while the server does not read"); return
        }
        c.wrote(sent: 1600, outputPending: 400, now: at(5100))  // the client read: reading resumes
        #expect(c.wantsRead)
        guard case .none = c.tick(now: at(5300), inputCount: 6, outputPending: 400) else {
            Issue.record("the frame's time counts from when reading resumed"); return
        }
        guard case .failStream(_, .slowFrame) = c.tick(now: at(5400), inputCount: 6, outputPending: 400) else {
            Issue.record("a frame still incomplete a timeout after reading resumed is slow"); return
        }
    }

    @Test func idleCountsReadsAndWritesAndNeverCutsAParkedRequest() {
        var c = core(idle: .milliseconds(100), frame: nil)
        #expect(c.nextDeadline(outputPending: 0) == at(100))
        c.wrote(sent: 10, outputPending: 5000, now: at(90))  // a slow reader still reads
        guard case .none = c.tick(now: at(150), inputCount: 0, outputPending: 5000) else {
            Issue.record("write progress is activity"); return
        }
        guard case .close(.idle) = c.tick(now: at(190), inputCount: 0, outputPending: 5000) else {
            Issue.record("no progress either way for the timeout"); return
        }
        var parked = core(idle: .milliseconds(100), frame: nil)
        guard case .answer = next(&parked, frame(1)) else { Issue.record("answer"); return }
        parked.answered(parked: .reload)
        guard case .none = parked.tick(now: at(10_000), inputCount: 0, outputPending: 0) else {
            Issue.record("an answer is owed: not idle"); return
        }
    }

    @Test func hangingUpWithdrawsTheParkedRequestAndCloses() {
        var c = core()
        guard case .answer = next(&c, frame(1)) else { Issue.record("answer"); return }
        c.answered(parked: .version(deadline: at(30_000)))
        #expect(c.hangUp() == .version(deadline: at(30_000)))
        #expect(c.phase == .closed && c.closeReason == .hungUp && !c.wantsRead)
        #expect(shouldClose(&c, []))
        #expect(c.hangUp() == nil, "once")
        guard case .none = c.tick(now: at(40_000), inputCount: 0, outputPending: 0) else { Issue.record("closed"); return }
    }

    @Test func endOfInputAnswersEveryWholeFrameThenCloses() {
        var c = core()
        c.endOfInput()
        #expect(!c.wantsRead)
        #expect(!shouldClose(&c, frame(1)), "a whole frame is still to answer")
        #expect(!shouldClose(&c, [], pending: 3), "answers still to send")
        #expect(shouldClose(&c, [0, 0, 0, 0, 9, 1]), "a truncated last frame is dropped")
        #expect(c.closeReason == .inputEnded)
    }

    @Test func drainingAnswersAVersionWaitAtOnceAndFinishesThePartialFrame() {
        var c = core()
        guard case .answer = next(&c, frame(1)) else { Issue.record("answer"); return }
        c.answered(parked: .version(deadline: at(5000)))
        #expect(c.drain() == .answerParkedUnavailable)
        c.unparked()
        #expect(!shouldClose(&c, [0, 0, 0, 0, 4, 1]), "the frame being received is finished")
        guard case .answer = next(&c, frame(4)) else { Issue.record("and answered"); return }
        c.answered(parked: nil)
        #expect(shouldClose(&c, []))
        #expect(c.closeReason == .drained)
        var reloading = core()
        guard case .answer = next(&reloading, frame(1)) else { Issue.record("answer"); return }
        reloading.answered(parked: .reload)
        #expect(reloading.drain() == .none, "a Reload finishes")
        #expect(!shouldClose(&reloading, []))
    }
}

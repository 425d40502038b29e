// A model check of the connection core: a byte stream split at arbitrary points and a
// script of events (reads, sends, clock ticks, resumptions, end of input, hang-up,
// draining) drive a `ConnectionCore` the way a transport does, and what comes out is
// checked against what must: the frames answered are exactly the stream's frames, in
// order, never skipped or repeated, none after the connection closed, a framing error only
// where the stream breaks the rules, the output within one answer of the high-water mark,
// and, when nothing cuts the connection short, every whole frame answered before it closes.
//
// Shared by a randomized unit test and the `connection` fuzz target.

public import AuthzConnection
import AuthzWire

public enum ConnectionModel {
    public static let configuration = ConnectionCore.Configuration(
        maxFrameSize: 64, idleTimeout: .milliseconds(1000), frameTimeout: .milliseconds(300), highWaterMark: 200,
        lowWaterMark: 100)

    /// The largest answer the model's responder writes (for a 64-byte payload).
    static let maxAnswer = 10 + 64 * 3

    /// Runs `stream` through the core under `script`; returns nil when every rule held, or
    /// what broke.
    public static func check(stream: [UInt8], script: [UInt8]) -> String? {
        var run = Run(stream: stream)
        for op in script {
            if let failure = run.step(op) { return failure }
            if run.closed { break }
        }
        return run.finish()
    }

    private struct Run {
        let stream: [UInt8]
        /// The frames of the whole stream, in order, and whether it breaks the framing
        /// rules after them.
        let expectedFrames: [ArraySlice<UInt8>]
        let streamFails: Bool
        let start = ContinuousClock.now
        var clock = 0
        var core: ConnectionCore
        var delivered = 0
        var input: [UInt8] = []
        var pending = 0
        var answered = 0
        var parkedAt: Int?
        var failedStream = false
        var closed = false
        var cutShort = false
        var ended = false

        init(stream: [UInt8]) {
            self.stream = stream
            var frames: [ArraySlice<UInt8>] = []
            var offset = 0
            var fails = false
            let parser = FrameParser(maxPayloadLength: ConnectionModel.configuration.maxFrameSize)
            parsing: while offset < stream.count {
                let result = stream.withUnsafeBytes { parser.parse(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
                switch result {
                case .frame(let frame):
                    frames.append(stream[(offset + frame.payload.lowerBound)..<(offset + frame.payload.upperBound)])
                    offset += frame.length
                case .needMoreData:
                    break parsing
                case .error:
                    fails = true
                    break parsing
                }
            }
            expectedFrames = frames
            streamFails = fails
            core = ConnectionCore(configuration: ConnectionModel.configuration, now: start)
        }

        var now: ContinuousClock.Instant { start + .milliseconds(clock) }

        mutating func step(_ op: UInt8) -> String? {
            let argument = Int(op >> 3)
            switch op % 8 {
            case 0, 7:
                guard core.wantsRead, delivered < stream.count else { break }
                let count = op % 8 == 7 ? stream.count - delivered : min(1 + argument, stream.count - delivered)
                input += stream[delivered..<(delivered + count)]
                delivered += count
                core.read(now: now)
            case 1:
                clock += 10 * (1 + argument)
                switch core.tick(now: now, inputCount: input.count, outputPending: pending) {
                case .none: break
                case .parkedDeadlinePassed:
                    if parkedAt == nil { return "a deadline passed with nothing parked" }
                    resume()
                case .failStream(_, let reason):
                    if reason != .slowFrame { return "a tick failed the stream for \(reason)" }
                    input = []
                    pending += 12
                    cutShort = true
                case .close(let reason):
                    if reason != .idle { return "a tick closed for \(reason)" }
                    cutShort = true
                }
            case 2:
                let sent = argument == 0 ? pending : min(pending, argument * 16)
                pending -= sent
                core.wrote(sent: sent, outputPending: pending, now: now)
            case 3:
                if parkedAt != nil { resume() }
            case 4:
                if delivered == stream.count, !ended {
                    ended = true
                    core.endOfInput()
                }
            case 5:
                if argument == 0 {
                    _ = core.hangUp()
                    parkedAt = nil
                    cutShort = true
                }
            default:
                if core.drain() == .answerParkedUnavailable {
                    if parkedAt == nil { return "draining found a wait that was not parked" }
                    resume()
                }
            }
            return settle()
        }

        mutating func resume() {
            parkedAt = nil
            pending += 12
            core.unparked()
        }

        /// What a transport does after every event: answer, then check for closing.
        mutating func settle() -> String? {
            while true {
                let step = input.withUnsafeBytes { core.nextFrame(input: $0, outputPending: pending, now: now) }
                switch step {
                case .stop:
                    break
                case .answer(let payload, let length, _):
                    if closed || failedStream { return "an answer after the stream failed or closed" }
                    guard answered < expectedFrames.count, Array(input[payload]) == Array(expectedFrames[answered]) else {
                        return "frame \(answered) answered out of order or not a frame of the stream"
                    }
                    answered += 1
                    pending += 10 + payload.count * 3
                    input.removeFirst(length)
                    let first = expectedFrames[answered - 1].first
                    if first == 0xFF {
                        parkedAt = clock
                        core.answered(parked: .version(deadline: now + .milliseconds(200)))
                    } else if first == 0xFE {
                        parkedAt = clock
                        core.answered(parked: .reload)
                    } else {
                        core.answered(parked: nil)
                    }
                    if pending > ConnectionModel.configuration.highWaterMark + ConnectionModel.maxAnswer {
                        return "\(pending) bytes owed: more than one answer over the high-water mark"
                    }
                    continue
                case .failStream:
                    if !streamFails || answered != expectedFrames.count {
                        return "a framing error where the stream has none (after \(answered) of \(expectedFrames.count) frames)"
                    }
                    failedStream = true
                    input = []
                    pending += 12
                    continue
                }
                break
            }
            let isClosing = input.withUnsafeBytes { core.shouldClose(input: $0, outputPending: pending) }
            if isClosing {
                closed = true
                if core.wantsRead { return "a closed connection still wants to read" }
            }
            return nil
        }

        /// Lets the connection run to its end: every parked request answered, every byte
        /// delivered and sent, the input ended. Unless something cut it short, every whole
        /// frame must have been answered.
        mutating func finish() -> String? {
            var rounds = 0
            while !closed, rounds < 10_000 {
                rounds += 1
                if parkedAt != nil { resume() }
                if core.wantsRead, delivered < stream.count {
                    input += stream[delivered...]
                    delivered = stream.count
                    core.read(now: now)
                } else if delivered == stream.count, !ended {
                    ended = true
                    core.endOfInput()
                }
                if pending > 0 {
                    let sent = pending
                    pending = 0
                    core.wrote(sent: sent, outputPending: 0, now: now)
                }
                if let failure = settle() { return failure }
                if !closed, core.phase == .closing, pending == 0 { return "closing with nothing owed, but not closed" }
            }
            if !closed { return "the connection never closed once everything was delivered and sent" }
            // Draining closes between frames, so only the frames delivered before count.
            if !cutShort, core.closeReason != .drained, answered != expectedFrames.count {
                return "closed (\(String(describing: core.closeReason))) with \(answered) of \(expectedFrames.count) whole frames answered"
            }
            if streamFails, !cutShort, core.closeReason == .inputEnded {
                return "the stream breaks the framing rules but closed as \(String(describing: core.closeReason))"
            }
            return nil
        }
    }
}

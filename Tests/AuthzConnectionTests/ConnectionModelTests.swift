// The connection core against its model on random byte streams split at random points,
// under random event scripts (the same check the `connection` fuzz target runs).

import AuthzWire
import AuthzWorkloads
import ConnectionModel
import Testing

/// A random stream: frames (some parking: payloads starting 0xFF or 0xFE), sometimes a bad
/// header somewhere, sometimes a truncated tail.
func randomStream(_ random: inout SplitMix64) -> [UInt8] {
    var stream: [UInt8] = []
    for _ in 0..<Int.random(in: 0...12, using: &random) {
        let length = Int.random(in: 0...(Int.random(in: 0..<10, using: &random) == 0 ? 80 : 40), using: &random)
        var payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
        if length > 0, Int.random(in: 0..<6, using: &random) == 0 { payload[0] = Bool.random(using: &random) ? 0xFF : 0xFE }
        if Int.random(in: 0..<25, using: &random) == 0 {
            stream += [UInt8.random(in: 1...255, using: &random), 0, 0, 0, 1, 0]  // a bad flag
        }
        FrameHeader.append(payloadLength: length, to: &stream)
        stream += payload
    }
    if Int.random(in: 0..<4, using: &random) == 0, !stream.isEmpty {
        stream.removeLast(Int.random(in: 1...min(4, stream.count), using: &random))
    }
    return stream
}

@Suite("Connection core model check")
struct ConnectionModelTests {
    @Test func randomStreamsAndEventsKeepEveryRule() {
        var random = SplitMix64(seed: 0x5eed)
        for iteration in 0..<20_000 {
            let stream = randomStream(&random)
            let script = (0..<Int.random(in: 0...60, using: &random)).map { _ in
                // Mostly reads, sends and ticks; hang-ups rarely.
                var op = UInt8.random(in: 0...255, using: &random)
                if op % 8 == 5, Bool.random(using: &random) { op &+= 1 }
                return op
            }
            if let failure = ConnectionModel.check(stream: stream, script: script) {
                Issue.record("iteration \(iteration): \(failure)\nstream \(stream)\nscript \(script)")
                return
            }
        }
    }

    @Test func fixedStreamsAreAnsweredInFullUnlessCutShort() {
        // A stream driven with no script is still answered in full (finish delivers and
        // sends everything); a hang-up cuts it short legitimately; a trailing bad header is
        // the framing error after every frame. (Mutations of the core's back-pressure
        // check were caught by the random test when this was written.)
        var stream: [UInt8] = []
        for payload in [[1, 2], [3], [0xFF, 1], [4]] as [[UInt8]] {
            FrameHeader.append(payloadLength: payload.count, to: &stream)
            stream += payload
        }
        #expect(ConnectionModel.check(stream: stream, script: []) == nil)
        #expect(ConnectionModel.check(stream: stream, script: [7, 5]) == nil)
        #expect(ConnectionModel.check(stream: stream + [1, 0, 0, 0, 0], script: [7, 2, 3, 2, 4]) == nil)
    }
}

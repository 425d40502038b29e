import AuthzWire
import AuthzWorkloads
import Testing

@Suite("Framing")
struct FramingTests {
    let parser = FrameParser(maxPayloadLength: 64)

    func parse(_ bytes: [UInt8], _ parser: FrameParser? = nil) -> FrameParser.Result {
        bytes.withUnsafeBytes { (parser ?? self.parser).parse($0) }
    }

    func framed(_ payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        FrameHeader.append(payloadLength: payload.count, to: &bytes)
        return bytes + payload
    }

    @Test func headerIsFlagAndBigEndianLength() {
        var bytes: [UInt8] = [0xAA]
        FrameHeader.append(payloadLength: 0x0102_0304, to: &bytes)
        #expect(bytes == [0xAA, 0, 1, 2, 3, 4])
        #expect(FrameHeader.size == 5)

        var buffer = [UInt8](repeating: 0xFF, count: 7)
        buffer.withUnsafeMutableBytes { FrameHeader.write(payloadLength: 300, to: $0) }
        #expect(buffer == [0, 0, 0, 1, 44, 0xFF, 0xFF])
    }

    @Test func emptyBufferNeedsAHeader() {
        guard case .needMoreData(let missing) = parse([]) else {
            Issue.record("expected needMoreData")
            return
        }
        #expect(missing == 5)
    }

    @Test func byteByByteFeeding() {
        let payload: [UInt8] = Array(1...10)
        let bytes = framed(payload) + [0]  // and the first byte of the next frame
        var buffer: [UInt8] = []
        for (index, byte) in bytes.enumerated() {
            buffer.append(byte)
            let result = parse(buffer)
            let frameEnd = 5 + payload.count
            if buffer.count < frameEnd {
                guard case .needMoreData(let missing) = result else {
                    Issue.record("byte \(index): expected needMoreData, got \(result)")
                    return
                }
                #expect(missing == (buffer.count < 5 ? 5 - buffer.count : frameEnd - buffer.count))
            } else {
                guard case .frame(let frame) = result else {
                    Issue.record("byte \(index): expected a frame, got \(result)")
                    return
                }
                #expect(frame.payload == 5..<frameEnd)
                #expect(frame.length == frameEnd)
                #expect(Array(buffer[frame.payload]) == payload)
            }
        }
    }

    @Test func headerSplitAcrossReads() {
        let bytes = framed([9, 8, 7])
        for split in 1..<5 {
            guard case .needMoreData(let missing) = parse(Array(bytes[..<split])) else {
                Issue.record("split at \(split): expected needMoreData")
                continue
            }
            #expect(missing == 5 - split)
            guard case .frame(let frame) = parse(bytes) else {
                Issue.record("expected a frame")
                continue
            }
            #expect(Array(bytes[frame.payload]) == [9, 8, 7])
        }
    }

    @Test func backToBackFramesAreParsedOneAtATime() {
        let first = framed([1, 2])
        let second = framed([])
        let third = framed([3])
        var buffer = first + second + third
        var payloads: [[UInt8]] = []
        while case .frame(let frame) = parse(buffer) {
            payloads.append(Array(buffer[frame.payload]))
            buffer.removeFirst(frame.length)
        }
        #expect(payloads == [[1, 2], [], [3]])
        #expect(buffer.isEmpty)
    }

    @Test func lengthAtTheLimitIsAccepted() {
        let bytes = framed([UInt8](repeating: 7, count: 64))
        guard case .frame(let frame) = parse(bytes) else {
            Issue.record("expected a frame")
            return
        }
        #expect(frame.payload.count == 64)
    }

    @Test func oversizeLengthIsRejectedAtTheHeader() {
        // Only the header has arrived: the declared length alone is enough to reject.
        var header: [UInt8] = []
        FrameHeader.append(payloadLength: 65, to: &header)
        guard case .error(let error) = parse(header) else {
            Issue.record("expected an error")
            return
        }
        #expect(error.code == .resourceExhausted)
        #expect(error.message.contains("65"))

        // The default limit is 64 KiB; a huge declared length never asks for its payload.
        let huge: [UInt8] = [0, 0xFF, 0xFF, 0xFF, 0xFF]
        guard case .error(let hugeError) = parse(huge, FrameParser()) else {
            Issue.record("expected an error")
            return
        }
        #expect(hugeError.code == .resourceExhausted)
        #expect(FrameParser().maxPayloadLength == 65536)
        guard case .needMoreData = parse([0, 0, 1, 0, 0], FrameParser()) else {
            Issue.record("a 64 KiB payload is within the default limit")
            return
        }
    }

    @Test(arguments: [UInt8(1), 2, 0x80, 0xFF])
    func nonZeroFlagIsRejectedAtTheFirstByte(flag: UInt8) {
        for bytes in [[flag], [flag, 0, 0, 0, 1, 42]] {
            guard case .error(let error) = parse(bytes) else {
                Issue.record("expected an error for flag \(flag)")
                return
            }
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("flag"))
        }
    }

    @Test func randomStreamsNeverCrashTheParser() {
        var generator = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let count = Int.random(in: 0...80, using: &generator)
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...3, using: &generator) }
            switch parse(bytes) {
            case .frame(let frame):
                #expect(frame.length <= bytes.count)
                #expect(frame.payload.count <= 64)
            case .needMoreData(let missing):
                #expect(missing > 0)
            case .error(let error):
                #expect(error.code == .invalidArgument || error.code == .resourceExhausted)
            }
        }
    }
}

// Fuzz target `frame`: `FrameParser` on an arbitrary byte stream, checked against a model
// of the framing (proto/README.md "Framing") written here in a few lines.
//
// The input is the stream a client writes on one connection. The parser keeps no state:
// a transport parses its unconsumed bytes after every read. So, for the stream as a whole
// and for the stream split at random points (each read's bytes appended to the unconsumed
// ones, in an exactly sized buffer so that an over-read is an AddressSanitizer report):
//
// - the same frames come out, at the same offsets, then the same end: more data needed
//   (with the exact number of missing bytes the model computes) or the same error;
// - a bad flag byte is an error as soon as that byte arrives, and an oversized length as
//   soon as the 5-byte header has (no byte of an oversized payload is ever needed);
// - every frame's header is the one `FrameHeader.write` writes for its payload length.
//
// Every input runs with the default limit (64 KiB) and with a small limit taken from its
// last byte (0...63), which makes RESOURCE_EXHAUSTED reachable.

import AuthzWire
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrame(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    Fuzz.initialize(seeds: seeds()) { seed in seed.withUnsafeBytes { check($0) } }
    return 0
}

/// What parsing a stream produces.
enum Event: Equatable, CustomStringConvertible {
    /// A frame whose payload is `stream[start..<start + count]`.
    case frame(start: Int, count: Int)
    case needMoreData(missing: Int)
    case error(RPCCode, String)

    var description: String {
        switch self {
        case .frame(let start, let count): "frame(payload \(start)..<\(start + count))"
        case .needMoreData(let missing): "needMoreData(\(missing))"
        case .error(let code, let message): "error(\(code): \(message))"
        }
    }
}

/// The framing as proto/README.md states it: the frames from a frame boundary `start` on
/// (passed to `frame`) and how it ends (returned), when `available` stream bytes arrived.
func model(
    _ stream: UnsafeRawBufferPointer, from start: Int = 0, available: Int, limit: Int, frame: (Event) -> Void = { _ in }
) -> Event {
    var start = start
    while true {
        let rest = available - start
        if rest == 0 { return .needMoreData(missing: 5) }
        if stream[start] != 0 { return .error(.invalidArgument, "") }
        if rest < 5 { return .needMoreData(missing: 5 - rest) }
        var length = 0
        for i in 1...4 { length = length << 8 | Int(stream[start + i]) }
        if length > limit { return .error(.resourceExhausted, "") }
        if rest < 5 + length { return .needMoreData(missing: 5 + length - rest) }
        frame(.frame(start: start + 5, count: length))
        start += 5 + length
    }
}

/// Parses `buffer` (the stream's bytes from offset `base`) until it needs more data or
/// fails: appends the frames to `events`, returns how it ended and the bytes consumed.
func parseAll(
    _ parser: FrameParser, _ buffer: UnsafeRawBufferPointer, base: Int, into events: inout [Event]
) -> (end: Event, consumed: Int) {
    var offset = 0
    while true {
        let rest = UnsafeRawBufferPointer(rebasing: buffer[offset...])
        switch parser.parse(rest) {
        case .frame(let frame):
            Fuzz.require(frame.payload.lowerBound == FrameHeader.size, "payload starts at \(frame.payload.lowerBound)")
            Fuzz.require(frame.length == frame.payload.upperBound, "length \(frame.length) for \(frame.payload)")
            Fuzz.require(frame.length <= rest.count, "a frame of \(frame.length) bytes in \(rest.count)")
            Fuzz.require(frame.payload.count <= parser.maxPayloadLength, "a payload over the limit")
            withUnsafeTemporaryAllocation(byteCount: FrameHeader.size, alignment: 1) { header in
                FrameHeader.write(payloadLength: frame.payload.count, to: header)
                Fuzz.require(
                    header.elementsEqual(rest[..<FrameHeader.size]), "the header is not what FrameHeader writes")
            }
            events.append(.frame(start: base + offset + frame.payload.lowerBound, count: frame.payload.count))
            offset += frame.length
        case .needMoreData(let missing):
            Fuzz.require(missing > 0, "needMoreData(missing: \(missing))")
            return (.needMoreData(missing: missing), offset)
        case .error(let error):
            Fuzz.require(!error.message.isEmpty, "an error without a message")
            return (.error(error.code, error.message), offset)
        }
    }
}

/// Errors compare by code against the model (which has no messages).
func sameAsModel(_ event: Event, _ model: Event) -> Bool {
    if case .error(let code, _) = event, case .error(let modelCode, _) = model { return code == modelCode }
    return event == model
}

func check(_ stream: UnsafeRawBufferPointer) {
    var random = FuzzRandom(hashing: stream)
    for limit in [FrameParser.defaultMaxPayloadLength, Int(stream.last ?? 0) % 64] {
        let parser = FrameParser(maxPayloadLength: limit)
        var expected: [Event] = []
        let expectedEnd = model(stream, available: stream.count, limit: limit) { expected.append($0) }
        var whole: [Event] = []
        whole.reserveCapacity(expected.count)
        let (end, _) = parseAll(parser, stream, base: 0, into: &whole)
        Fuzz.require(
            whole == expected && sameAsModel(end, expectedEnd),
            "limit \(limit): parsed \(whole) then \(end), the model says \(expected) then \(expectedEnd)")

        // Errors arrive at the earliest byte: the model's answer for every prefix that ends
        // inside the last frame's header.
        if case .error = expectedEnd {
            var lastStart = 0
            if case .frame(let start, let count) = expected.last { lastStart = start + count }
            for available in lastStart + 1...min(stream.count, lastStart + FrameHeader.size) {
                let prefix = UnsafeRawBufferPointer(rebasing: stream[lastStart..<available])
                var none: [Event] = []
                let (end, _) = parseAll(parser, prefix, base: lastStart, into: &none)
                let modelEnd = model(stream, from: lastStart, available: available, limit: limit)
                Fuzz.require(
                    none.isEmpty && sameAsModel(end, modelEnd),
                    "limit \(limit), \(available) bytes: parsed \(end), the model says \(modelEnd)")
            }
        }

        // Reads of random sizes: 1 to 8 bytes at first, then larger (in the second round,
        // larger from the start). Each read's bytes are appended to the unconsumed ones in
        // a new, exactly sized buffer, as a transport's input buffer holds them.
        for round in 0..<2 {
            var events: [Event] = []
            events.reserveCapacity(whole.count)
            var pending = ExactBuffer()
            var consumed = 0  // of `pending`
            var pendingBase = 0  // stream offset of `pending`'s first byte
            var arrived = 0
            var last: Event
            while true {
                let small = round == 0 && arrived < 64
                let read = min(1 + random.below(small ? 8 : max(1, stream.count)), stream.count - arrived)
                pending = ExactBuffer(
                    UnsafeRawBufferPointer(rebasing: pending.view[consumed...]),
                    UnsafeRawBufferPointer(rebasing: stream[arrived..<arrived + read]))
                pendingBase += consumed
                arrived += read
                (last, consumed) = parseAll(parser, pending.view, base: pendingBase, into: &events)
                if case .error = last { break }
                if arrived == stream.count { break }
                // What the parser asks for is exactly what the model says is missing.
                let modelEnd = model(stream, from: pendingBase + consumed, available: arrived, limit: limit)
                Fuzz.require(
                    last == modelEnd, "after \(arrived) bytes: \(last), the model says \(modelEnd)")
            }
            Fuzz.require(
                events == whole && last == end,
                "limit \(limit): split reads parsed \(events) then \(last), the whole stream \(whole) then \(end)")
        }
    }
}

/// Streams of frames: every request seed framed back to back, and broken streams.
func seeds() -> [(name: String, bytes: [UInt8])] {
    var seeds: [(name: String, bytes: [UInt8])] = []
    var all: [UInt8] = []
    for (name, request) in Seeds.requests.prefix(20) {
        let bytes = request.frameBytes
        all += bytes
        seeds.append(("frame-\(name)", bytes))
    }
    seeds.append(("stream-every-method", all))
    func frame(_ payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        FrameHeader.append(payloadLength: payload.count, to: &bytes)
        return bytes + payload
    }
    let status = WireRequest(callId: 1, method: .status).frameBytes
    seeds += [
        ("empty-stream", []),
        ("empty-frame", frame([])),
        ("empty-frames", frame([]) + frame([]) + frame([0x08, 0x01])),
        ("flag-compressed", [1, 0, 0, 0, 2, 0x08, 0x01]),
        ("flag-after-frames", status + status + [0x80]),
        ("oversized-default", [0, 0, 1, 0, 1] + [UInt8](repeating: 0, count: 16)),
        ("oversized-max", [0, 0xFF, 0xFF, 0xFF, 0xFF]),
        ("limit-exactly-64k", [0, 0, 1, 0, 0]),
        ("partial-header", status + [0, 0, 0]),
        ("partial-payload", status + Array(status.dropLast())),
        ("small-limit-from-last-byte", frame([1, 2, 3]) + frame([UInt8](repeating: 7, count: 40)) + [0x05]),
    ]
    return seeds
}

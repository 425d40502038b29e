// Fuzz target `connection`: the sans-I/O connection core (`AuthzConnection.ConnectionCore`)
// driven by an arbitrary byte stream split at arbitrary points and an arbitrary script of
// events (reads of N bytes, sends, clock ticks, resumptions of parked requests, end of
// input, hang-up, draining), checked against the model in Tests/ConnectionModel: frames
// answered exactly once and in order, none after a close, a framing error only where the
// stream breaks the rules, the output within one answer of the high-water mark, and every
// whole frame answered before a close that nothing cut short.
//
// Input: the first byte is the script's length L; the next L bytes are the script; the rest
// is the stream.

import AuthzWire
import ConnectionModel
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConnection(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(Array(UnsafeRawBufferPointer(start: data, count: size)))
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    Fuzz.initialize(seeds: seeds()) { check($0) }
    return 0
}

func check(_ input: [UInt8]) {
    guard let length = input.first else { return }
    let scriptEnd = min(input.count, 1 + Int(length))
    let script = Array(input[1..<scriptEnd])
    let stream = Array(input[scriptEnd...])
    if let failure = ConnectionModel.check(stream: stream, script: script) {
        Fuzz.fail("connection core: \(failure)")
    }
}

func seeds() -> [(name: String, bytes: [UInt8])] {
    func frame(_ payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        FrameHeader.append(payloadLength: payload.count, to: &bytes)
        return bytes + payload
    }
    let frames = frame([1, 2, 3]) + frame([0xFF, 9]) + frame([]) + frame([0xFE]) + frame([7, 7])
    let scripts: [(String, [UInt8])] = [
        ("nothing", []),
        ("byte-by-byte", [0, 0, 0, 0, 0, 0, 2, 3, 0, 0, 0, 0, 0, 2, 4]),
        ("all-then-end", [7, 2, 3, 2, 3, 4]),
        ("ticks", [8, 1, 9, 1, 17, 1, 7, 1, 1, 1]),
        ("hang-up", [7, 5]),
        ("drain", [0, 0, 6, 7, 2, 3]),
    ]
    var seeds: [(name: String, bytes: [UInt8])] = []
    for (name, script) in scripts {
        seeds.append(("\(name)", [UInt8(script.count)] + script + frames))
        seeds.append(("\(name)-bad-flag", [UInt8(script.count)] + script + frames + [3, 0, 0, 0, 1, 0]))
        seeds.append(("\(name)-truncated", [UInt8(script.count)] + script + frames.dropLast(2)))
    }
    return seeds
}

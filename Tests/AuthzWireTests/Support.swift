// Helpers shared by the AuthzWire tests: a hand-written protobuf encoder (an oracle
// independent of protobuf-c), a seeded generator, and encode/decode shortcuts.

import AuthzWire

/// Hand-encoded protobuf fields.
enum PB {
    static func varint(_ value: UInt64) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        repeat {
            var byte = UInt8(value & 0x7F)
            value >>= 7
            if value != 0 { byte |= 0x80 }
            bytes.append(byte)
        } while value != 0
        return bytes
    }

    static func varint(_ field: UInt64, _ value: UInt64) -> [UInt8] {
        varint(field << 3) + varint(value)
    }

    /// An int32 enum value as protobuf encodes it (negative values take 10 bytes).
    static func enumValue(_ field: UInt64, _ value: Int32) -> [UInt8] {
        varint(field, UInt64(bitPattern: Int64(value)))
    }

    static func bytes(_ field: UInt64, _ payload: [UInt8]) -> [UInt8] {
        varint(field << 3 | 2) + varint(UInt64(payload.count)) + payload
    }

    static func string(_ field: UInt64, _ text: String) -> [UInt8] {
        bytes(field, Array(text.utf8))
    }
}

/// SplitMix64: deterministic random bytes for the garbage tests.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The payload of the single frame `bytes` must hold.
func framePayload(_ bytes: [UInt8], maxPayloadLength: Int = Int(UInt32.max)) -> [UInt8]? {
    bytes.withUnsafeBytes { buffer in
        guard case .frame(let frame) = FrameParser(maxPayloadLength: maxPayloadLength).parse(buffer),
            frame.length == bytes.count
        else { return nil }
        return Array(bytes[frame.payload])
    }
}

func frame(_ request: WireRequest) -> [UInt8] {
    var bytes: [UInt8] = []
    request.append(to: &bytes)
    return bytes
}

func frame(_ response: WireResponse) -> [UInt8] {
    var bytes: [UInt8] = []
    response.append(to: &bytes)
    return bytes
}

/// Decodes a request payload: the request, or the error.
func decodeRequest(
    _ payload: [UInt8], maxBatchChecks: Int = WireRequest.defaultMaxBatchChecks
) -> Result<WireRequest, WireRequestError> {
    payload.withUnsafeBytes { buffer in
        do throws(WireRequestError) {
            return .success(try WireRequest(decoding: buffer, maxBatchChecks: maxBatchChecks))
        } catch {
            return .failure(error)
        }
    }
}

/// The error decoding a request payload gives, nil when it decodes.
func requestError(_ payload: [UInt8], maxBatchChecks: Int = WireRequest.defaultMaxBatchChecks) -> WireRequestError? {
    if case .failure(let error) = decodeRequest(payload, maxBatchChecks: maxBatchChecks) { return error }
    return nil
}

func decodeResponse(_ payload: [UInt8]) -> Result<WireResponse, WireError> {
    payload.withUnsafeBytes { buffer in
        do throws(WireError) {
            return .success(try WireResponse(decoding: buffer))
        } catch {
            return .failure(error)
        }
    }
}

/// The protobuf payload of an encoded request or response (the frame minus its header).
func payload(of request: WireRequest) -> [UInt8] { Array(frame(request).dropFirst(FrameHeader.size)) }
func payload(of response: WireResponse) -> [UInt8] { Array(frame(response).dropFirst(FrameHeader.size)) }

// gRPC's length-prefixed message framing (proto/README.md "Framing"):
//
//   +------+----------------------------+-------------------------+
//   | flag | payload length (u32, BE)   | payload (protobuf)      |
//   +------+----------------------------+-------------------------+
//     1 B            4 B                     length bytes
//
// The flag is 0 (uncompressed); compression is not supported, so any other flag is an
// error. Framing errors are fatal to a connection: the byte stream cannot be trusted
// after them.

/// The 5-byte frame header.
public enum FrameHeader {
    /// Bytes in a header: the flag byte and the 4-byte big-endian payload length.
    public static let size = 5
    /// The only flag accepted: an uncompressed payload.
    public static let uncompressedFlag: UInt8 = 0
    /// The largest payload length a header can carry.
    public static let maxEncodableLength = Int(UInt32.max)

    /// Writes a header for an uncompressed payload of `payloadLength` bytes into the first
    /// `size` bytes of `destination`.
    public static func write(payloadLength: Int, to destination: UnsafeMutableRawBufferPointer) {
        precondition(destination.count >= size, "FrameHeader.write: destination shorter than 5 bytes")
        precondition(
            payloadLength >= 0 && payloadLength <= maxEncodableLength,
            "FrameHeader.write: payload length \(payloadLength) out of range")
        let length = UInt32(payloadLength)
        destination[0] = uncompressedFlag
        destination[1] = UInt8(truncatingIfNeeded: length >> 24)
        destination[2] = UInt8(truncatingIfNeeded: length >> 16)
        destination[3] = UInt8(truncatingIfNeeded: length >> 8)
        destination[4] = UInt8(truncatingIfNeeded: length)
    }

    /// Appends a header for an uncompressed payload of `payloadLength` bytes.
    public static func append(payloadLength: Int, to bytes: inout [UInt8]) {
        withUnsafeTemporaryAllocation(byteCount: size, alignment: 1) { header in
            write(payloadLength: payloadLength, to: header)
            bytes.append(contentsOf: header)
        }
    }
}

/// Finds the first frame at the start of a buffer, without copying or allocating.
///
/// The parser keeps no state: the caller accumulates the bytes it reads and calls `parse`
/// on its unconsumed bytes after every read, consuming `frame.length` bytes per frame.
/// The flag byte is checked as soon as it arrives and the declared length as soon as the
/// header is complete, so an oversized frame is rejected before any of its payload is
/// buffered.
public struct FrameParser: Sendable, Hashable {
    /// The default limit on a payload: 64 KiB.
    public static let defaultMaxPayloadLength = 64 * 1024

    /// The largest payload accepted; a header declaring more is `resourceExhausted`.
    public var maxPayloadLength: Int

    public init(maxPayloadLength: Int = FrameParser.defaultMaxPayloadLength) {
        precondition(maxPayloadLength >= 0, "FrameParser: negative maxPayloadLength")
        self.maxPayloadLength = maxPayloadLength
    }

    /// A complete frame at the start of the buffer.
    public struct Frame: Sendable, Hashable {
        /// The payload's byte offsets in the parsed buffer.
        public var payload: Range<Int>
        /// Bytes the whole frame occupies (header and payload): consume this many.
        public var length: Int { payload.upperBound }
    }

    public enum Result: Sendable {
        /// The buffer holds no complete frame yet: at least `missing` more bytes are needed
        /// (to complete the header while it is incomplete, then to complete the payload).
        case needMoreData(missing: Int)
        /// A complete frame starts the buffer.
        case frame(Frame)
        /// The stream is broken: a non-zero flag byte (`invalidArgument`) or a declared
        /// payload length over `maxPayloadLength` (`resourceExhausted`). Fatal to the
        /// connection.
        case error(WireError)
    }

    /// Parses the frame at the start of `buffer`.
    public func parse(_ buffer: UnsafeRawBufferPointer) -> Result {
        guard !buffer.isEmpty else { return .needMoreData(missing: FrameHeader.size) }
        let flag = buffer[0]
        guard flag == FrameHeader.uncompressedFlag else {
            return .error(
                .invalidArgument(
                    "frame flag byte is \(flag): only 0 (uncompressed) is accepted; compression is not supported"
                ))
        }
        guard buffer.count >= FrameHeader.size else {
            return .needMoreData(missing: FrameHeader.size - buffer.count)
        }
        let declared =
            Int(buffer[1]) << 24 | Int(buffer[2]) << 16 | Int(buffer[3]) << 8 | Int(buffer[4])
        guard declared <= maxPayloadLength else {
            return .error(
                .resourceExhausted(
                    "frame declares a \(declared)-byte payload; the limit is \(maxPayloadLength) bytes"))
        }
        let end = FrameHeader.size + declared
        guard buffer.count >= end else { return .needMoreData(missing: end - buffer.count) }
        return .frame(Frame(payload: FrameHeader.size..<end))
    }
}

/// A message that can write itself as one frame. Conformers build their protobuf-c message
/// once per `withFrameWriter` call; the conveniences below each take one build.
public protocol FrameEncodable {
    /// Calls `body` with the length of the frame (header and payload) and a function that
    /// writes the frame at the start of a buffer of at least that many bytes and returns
    /// the bytes written.
    func withFrameWriter<R>(_ body: (_ frameLength: Int, _ write: (UnsafeMutableRawBufferPointer) -> Int) -> R) -> R
}

extension FrameEncodable {
    /// Bytes of the frame (header and payload). This builds the message; to size and write
    /// it with one build use `withFrameWriter(_:)` or `append(to:)`.
    public func encodedSize() -> Int {
        withFrameWriter { frameLength, _ in frameLength }
    }

    /// Writes the frame at the start of `destination`, which must hold `encodedSize()`
    /// bytes; returns the bytes written.
    public func encode(into destination: UnsafeMutableRawBufferPointer) -> Int {
        withFrameWriter { _, write in write(destination) }
    }

    /// Appends the frame to `bytes` (one build).
    public func append(to bytes: inout [UInt8]) {
        withFrameWriter { frameLength, write in FrameEncoder.append(frameLength, write, to: &bytes) }
    }
}

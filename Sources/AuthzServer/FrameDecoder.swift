// Frame decoding for NIO: AuthzWire.FrameParser over the cumulation buffer of a
// ByteToMessageHandler. The flag byte is checked as soon as it arrives and the declared
// length as soon as the header is complete, so an oversized frame is rejected before any
// of its payload is buffered beyond what one socket read brought in.

import AuthzWire
import NIOCore

/// A framing error: the byte stream cannot be trusted any more; the connection is answered
/// once (call id 0) and closed.
struct FrameDecodingError: Error {
    var error: WireError
}

/// Emits each frame's payload as a `ByteBuffer` slice (no copy).
///
/// A class so the connection handler can ask, at shutdown, whether a request is half
/// received (`holdsPartialFrame`): it shares the instance with the `ByteToMessageHandler`.
final class FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    private let parser: FrameParser
    /// Whether bytes of an incomplete frame are buffered.
    private(set) var holdsPartialFrame = false

    init(maxPayloadLength: Int) {
        parser = FrameParser(maxPayloadLength: maxPayloadLength)
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let parser = self.parser
        let result = buffer.withUnsafeReadableBytes { parser.parse($0) }
        switch result {
        case .needMoreData:
            holdsPartialFrame = buffer.readableBytes > 0
            return .needMoreData
        case .frame(let frame):
            buffer.moveReaderIndex(forwardBy: frame.payload.lowerBound)
            guard let payload = buffer.readSlice(length: frame.payload.count) else {
                // Unreachable: the parser saw the whole frame in these bytes.
                throw FrameDecodingError(error: WireError(.internal, "frame decoder lost track of the buffer"))
            }
            holdsPartialFrame = false
            context.fireChannelRead(Self.wrapInboundOut(payload))
            return .continue
        case .error(let error):
            throw FrameDecodingError(error: error)
        }
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // Whole frames still buffered are answered; a truncated one is dropped.
        let state = try decode(context: context, buffer: &buffer)
        if case .needMoreData = state {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            holdsPartialFrame = false
        }
        return state
    }
}

// protobuf-c unpacks `string` fields as NUL-terminated C strings and keeps no length, so an
// id holding a NUL byte would be read as its prefix (`linus\0junk` as `linus`). Before the
// decoders trust an unpacked string, the raw payload is checked: one `memchr` for a zero
// byte (a canonical request rarely holds one: only empty lengths and zero varints), and
// only then a walk of the protobuf wire format, driven by protobuf-c's own descriptors, to
// find the string field holding the NUL. Both decoders use it, so they agree.

internal import CAuthzProto
internal import CProtobufC

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A `string` field of a payload that holds a NUL byte.
struct NulInString {
    /// Where it sits, as in the decoders' errors: `effective_permission.user`,
    /// `batch.checks[2].can_use.asset`.
    var path: String
    /// The offset of the first NUL inside the string.
    var byte: Int

    /// The INVALID_ARGUMENT message.
    var message: String {
        "\(path): the id contains a NUL byte (byte \(byte)); ids use only A-Z a-z 0-9 . _ : @ -"
    }
}

enum NulScan {
    /// Whether `payload` holds a zero byte at all: the cheap test before `find`.
    @inline(__always)
    static func mayHoldNul(_ payload: UnsafeRawBufferPointer) -> Bool {
        guard let base = payload.baseAddress, !payload.isEmpty else { return false }
        return memchr(base, 0, payload.count) != nil
    }

    /// The first `string` field (in wire order, descending into message fields) of
    /// `payload`, a message of type `descriptor`, that holds a NUL byte; nil if none.
    /// Unknown fields and bytes fields are not strings. Stops quietly at malformed input
    /// (the caller has unpacked the payload already, so there is none).
    static func find(
        in payload: UnsafeRawBufferPointer, of descriptor: UnsafePointer<ProtobufCMessageDescriptor>
    ) -> NulInString? {
        guard let found = scan(payload, descriptor, depth: 0) else { return nil }
        return NulInString(path: found.path.joined(separator: "."), byte: found.byte)
    }

    /// Deeper than any message of the protocol: a payload nesting more is not walked.
    private static let maxDepth = 32

    private static func scan(
        _ bytes: UnsafeRawBufferPointer, _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>, depth: Int
    ) -> (path: [String], byte: Int)? {
        var reader = WireFormatReader(bytes)
        while !reader.isAtEnd {
            let fieldStart = reader.offset
            guard let tag = reader.varint() else { return nil }
            guard tag & 7 == 2 else {
                guard reader.skipValue(wireType: tag & 7) else { return nil }
                continue
            }
            guard let length = reader.varint() else { return nil }
            let start = reader.offset
            guard reader.skip(length) else { return nil }
            let value = UnsafeRawBufferPointer(rebasing: bytes[start..<reader.offset])
            guard let base = value.baseAddress, !value.isEmpty, let zero = memchr(base, 0, value.count),
                tag >> 3 <= UInt64(UInt32.max),
                let field = protobuf_c_message_descriptor_get_field(descriptor, UInt32(tag >> 3))
            else { continue }
            switch field.pointee.type {
            case PROTOBUF_C_TYPE_STRING:
                return ([fieldName(field, bytes, before: fieldStart)], base.distance(to: zero))
            case PROTOBUF_C_TYPE_MESSAGE:
                guard depth < maxDepth, let inner = field.pointee.descriptor else { continue }
                let message = inner.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
                if let found = scan(value, message, depth: depth + 1) {
                    return ([fieldName(field, bytes, before: fieldStart)] + found.path, found.byte)
                }
            default:
                continue
            }
        }
        return nil
    }

    /// The field's name, with its index for a repeated field (the occurrences of the same
    /// field number before `offset` in `bytes`). Only on the error path.
    private static func fieldName(
        _ field: UnsafePointer<ProtobufCFieldDescriptor>, _ bytes: UnsafeRawBufferPointer, before offset: Int
    ) -> String {
        let name = String(cString: field.pointee.name)
        guard field.pointee.label == PROTOBUF_C_LABEL_REPEATED else { return name }
        var reader = WireFormatReader(UnsafeRawBufferPointer(rebasing: bytes[..<offset]))
        var index = 0
        while !reader.isAtEnd {
            guard let tag = reader.varint(), reader.skipValue(wireType: tag & 7) else { break }
            if tag >> 3 == UInt64(field.pointee.id) { index += 1 }
        }
        return "\(name)[\(index)]"
    }
}

/// Just enough of the protobuf wire format to walk fields.
struct WireFormatReader {
    private let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var isAtEnd: Bool { offset >= bytes.count }

    mutating func varint() -> UInt64? {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 64, by: 7) {
            guard offset < bytes.count else { return nil }
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7F) << UInt64(shift)
            if byte & 0x80 == 0 { return value }
        }
        return nil
    }

    mutating func skip(_ count: UInt64) -> Bool {
        guard count <= UInt64(bytes.count - offset) else { return false }
        offset += Int(count)
        return true
    }

    /// Skips the value of a field of `wireType`; false for a malformed value or a group
    /// (wire types 3 and 4, which protobuf-c refuses).
    mutating func skipValue(wireType: UInt64) -> Bool {
        switch wireType {
        case 0: return varint() != nil
        case 1: return skip(8)
        case 2: return varint().map { skip($0) } ?? false
        case 5: return skip(4)
        default: return false
        }
    }
}

// Hand-encoded protobuf fields for seeds the Swift encoder refuses to write (unknown enum
// values, NUL bytes in ids, unknown fields): the same few lines as
// Tests/WireTestSupport/Protobuf.swift, which is not a library of the main package.

public enum PB {
    public static func varint(_ value: UInt64) -> [UInt8] {
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

    public static func varint(_ field: UInt64, _ value: UInt64) -> [UInt8] {
        varint(field << 3) + varint(value)
    }

    /// An int32 enum value as protobuf encodes it (negative values take 10 bytes).
    public static func enumValue(_ field: UInt64, _ value: Int32) -> [UInt8] {
        varint(field, UInt64(bitPattern: Int64(value)))
    }

    public static func bytes(_ field: UInt64, _ payload: [UInt8]) -> [UInt8] {
        varint(field << 3 | 2) + varint(UInt64(payload.count)) + payload
    }

    public static func string(_ field: UInt64, _ text: String) -> [UInt8] {
        bytes(field, Array(text.utf8))
    }
}

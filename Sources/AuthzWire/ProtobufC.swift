// Shared plumbing between the Swift values and protobuf-c: scratch memory for building
// message graphs, framing a packed message, reading C strings, checking ids and enums.
// C pointers never leave the closures that own them; only Swift values escape.

internal import AuthzEngine
internal import CAuthzProto
internal import CProtobufC

// MARK: - Scratch memory

/// A bump allocator for building a protobuf-c message graph that lives for one encode.
///
/// It starts in caller-provided (stack) memory and continues in heap chunks it frees when
/// it goes away, so small messages are built without touching the heap.
struct ScratchArena: ~Copyable {
    private var cursor: UnsafeMutableRawPointer
    private var end: UnsafeMutableRawPointer
    /// Heap chunks, newest first; each begins with a pointer to the previous one.
    private var chunks: UnsafeMutableRawPointer?

    private static let chunkHeader = 16
    private static let minimumChunk = 4096

    init(_ initial: UnsafeMutableRawBufferPointer) {
        guard let base = initial.baseAddress else { preconditionFailure("ScratchArena: empty initial buffer") }
        cursor = base
        end = base + initial.count
        chunks = nil
    }

    deinit {
        var chunk = chunks
        while let current = chunk {
            chunk = current.load(as: UnsafeMutableRawPointer?.self)
            current.deallocate()
        }
    }

    /// Uninitialised memory for `count` values of `T`, bound to `T`.
    mutating func allocate<T>(_: T.Type, count: Int = 1) -> UnsafeMutablePointer<T> {
        let byteCount = MemoryLayout<T>.stride * count
        let alignment = MemoryLayout<T>.alignment
        var start = cursor.alignedUp(toMultipleOf: alignment)
        if start.distance(to: end) < byteCount {
            let size = max(Self.minimumChunk, Self.chunkHeader + byteCount + alignment)
            let chunk = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: Self.chunkHeader)
            chunk.storeBytes(of: chunks, as: UnsafeMutableRawPointer?.self)
            chunks = chunk
            end = chunk + size
            start = (chunk + Self.chunkHeader).alignedUp(toMultipleOf: alignment)
        }
        cursor = start + byteCount
        return start.bindMemory(to: T.self, capacity: count)
    }

    /// A NUL-terminated copy of `string`. protobuf-c strings are C strings, so a NUL inside
    /// `string` would silently cut it short: each one is sent as U+FFFD instead, which no
    /// id accepts, so a damaged id is rejected rather than answered for its prefix.
    mutating func cString(_ string: String) -> UnsafeMutablePointer<CChar> {
        var string = string
        let (count, nuls) = string.withUTF8 { bytes in
            var nuls = 0
            for byte in bytes where byte == 0 { nuls += 1 }
            return (bytes.count, nuls)
        }
        let replacement: (UInt8, UInt8, UInt8) = (0xEF, 0xBF, 0xBD)
        let text = allocate(UInt8.self, count: count + 2 * nuls + 1)
        string.withUTF8 { bytes in
            guard let source = bytes.baseAddress else { return }
            if nuls == 0 {
                text.initialize(from: source, count: count)
                return
            }
            var offset = 0
            for byte in bytes {
                if byte == 0 {
                    text[offset] = replacement.0
                    text[offset + 1] = replacement.1
                    text[offset + 2] = replacement.2
                    offset += 3
                } else {
                    text[offset] = byte
                    offset += 1
                }
            }
        }
        text[count + 2 * nuls] = 0
        return UnsafeMutableRawPointer(text).assumingMemoryBound(to: CChar.self)
    }

    /// `string` as a protobuf-c string field: the generated `*__init` functions already set
    /// string fields to protobuf-c's shared empty string, so empty strings stay unset.
    mutating func set(_ field: inout UnsafeMutablePointer<CChar>?, to string: String) {
        if !string.isEmpty { field = cString(string) }
    }

    /// `string`'s UTF-8 bytes, copied, as a protobuf-c bytes field (every byte is kept: a
    /// bytes field has no terminator). Empty strings stay unset.
    mutating func set(_ field: inout ProtobufCBinaryData, toBytesOf string: String) {
        var string = string
        string.withUTF8 { bytes in
            guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
            let copy = allocate(UInt8.self, count: bytes.count)
            copy.initialize(from: source, count: bytes.count)
            field = ProtobufCBinaryData(len: bytes.count, data: copy)
        }
    }

    /// An array of `values.count` pointers to messages built by `make`.
    mutating func pointerArray<Element, Message>(
        _ values: [Element],
        _ make: (Element, inout ScratchArena) -> UnsafeMutablePointer<Message>
    ) -> UnsafeMutablePointer<UnsafeMutablePointer<Message>?> {
        let array = allocate(UnsafeMutablePointer<Message>?.self, count: values.count)
        for index in values.indices {
            (array + index).initialize(to: make(values[index], &self))
        }
        return array
    }
}

/// Runs `body` with an arena whose first kilobyte is on the stack.
func withScratchArena<R>(_ body: (inout ScratchArena) -> R) -> R {
    withUnsafeTemporaryAllocation(byteCount: 1024, alignment: 16) { buffer in
        var arena = ScratchArena(buffer)
        return body(&arena)
    }
}

// MARK: - Framing a packed message

/// The base of a generated message struct (its first member).
func messageBase<Message>(_ message: UnsafeMutablePointer<Message>) -> UnsafePointer<ProtobufCMessage> {
    UnsafeRawPointer(message).assumingMemoryBound(to: ProtobufCMessage.self)
}

/// Encodes the message `build` makes as one frame, for the public encoding methods of
/// `WireRequest` and `WireResponse`.
enum FrameEncoder {
    typealias Build = (inout ScratchArena) -> UnsafePointer<ProtobufCMessage>

    /// Builds the message once, then calls `body` with the frame length and a function that
    /// writes the frame at the start of a buffer of at least that many bytes.
    static func withFrameWriter<R>(
        _ build: Build, _ body: (_ frameLength: Int, _ write: (UnsafeMutableRawBufferPointer) -> Int) -> R
    ) -> R {
        withScratchArena { arena in
            let message = build(&arena)
            let payloadLength = protobuf_c_message_get_packed_size(message)
            let frameLength = FrameHeader.size + payloadLength
            return body(frameLength) { destination in
                precondition(
                    destination.count >= frameLength,
                    "\(destination.count)-byte buffer for a \(frameLength)-byte frame")
                FrameHeader.write(payloadLength: payloadLength, to: destination)
                if let payload = destination.baseAddress?.advanced(by: FrameHeader.size) {
                    let packed = protobuf_c_message_pack(message, payload.assumingMemoryBound(to: UInt8.self))
                    precondition(packed == payloadLength, "protobuf-c packed \(packed) bytes, announced \(payloadLength)")
                }
                return frameLength
            }
        }
    }

    /// Appends the frame `write` writes (`frameLength` bytes) to `bytes`.
    static func append(
        _ frameLength: Int, _ write: (UnsafeMutableRawBufferPointer) -> Int, to bytes: inout [UInt8]
    ) {
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: frameLength))
        _ = bytes.withUnsafeMutableBytes { write(UnsafeMutableRawBufferPointer(rebasing: $0[start...])) }
    }
}

// MARK: - Reading decoded messages

/// A protobuf-c string as a Swift string (protobuf-c gives absent strings as "", but be
/// ready for NULL). Invalid UTF-8 is repaired.
func swiftString(_ text: UnsafePointer<CChar>?) -> String {
    guard let text else { return "" }
    return String(cString: text)
}

/// A protobuf-c bytes field as a Swift string (invalid UTF-8 is repaired).
func swiftString(_ data: ProtobufCBinaryData) -> String {
    guard data.len > 0, let bytes = data.data else { return "" }
    return String(decoding: UnsafeBufferPointer(start: bytes, count: data.len), as: UTF8.self)
}

/// Where a field sits in a request, for error messages; only spelled out on failure.
struct FieldPath {
    /// The index of the batch check holding the field, if any.
    var checkIndex: Int?

    func callAsFunction(_ field: String) -> String {
        guard let checkIndex else { return field }
        return "batch.checks[\(checkIndex)].\(field)"
    }
}

/// Reads an id and checks it as `Identifier.isValid` does: 1 to `Identifier.maxLength`
/// bytes from `A-Z a-z 0-9 . _ : @ -`. With `allowEmpty` an empty id is returned as "".
func decodeIdentifier(
    _ text: UnsafePointer<CChar>?, allowEmpty: Bool, field: @autoclosure () -> String
) throws(WireError) -> String {
    guard let text, text.pointee != 0 else {
        if allowEmpty { return "" }
        throw .invalidArgument("\(field()): the id is empty")
    }
    var count = 0
    while true {
        let byte = UInt8(bitPattern: text[count])
        if byte == 0 { break }
        guard Identifier.isAllowed(byte) else {
            throw .invalidArgument(
                "\(field()): byte \(count) of the id is \(hex(byte)); ids use only A-Z a-z 0-9 . _ : @ -")
        }
        count += 1
        guard count <= Identifier.maxLength else {
            throw .invalidArgument("\(field()): the id is longer than \(Identifier.maxLength) bytes")
        }
    }
    return String(decoding: UnsafeRawBufferPointer(start: text, count: count), as: UTF8.self)
}

/// Reads an id sent as a protobuf `bytes` field (the lookups' ids) and checks it as
/// `Identifier.isValid` does. Unlike a C string, a bytes field keeps every byte, so an id
/// with a NUL inside is rejected (naming the byte) rather than read as its prefix.
func decodeIdentifier(
    _ data: ProtobufCBinaryData?, allowEmpty: Bool, field: @autoclosure () -> String
) throws(WireError) -> String {
    guard let data, data.len > 0, let bytes = data.data else {
        if allowEmpty { return "" }
        throw .invalidArgument("\(field()): the id is empty")
    }
    guard data.len <= Identifier.maxLength else {
        throw .invalidArgument("\(field()): the id is longer than \(Identifier.maxLength) bytes")
    }
    for index in 0..<data.len where !Identifier.isAllowed(bytes[index]) {
        throw .invalidArgument(
            "\(field()): byte \(index) of the id is \(hex(bytes[index])); ids use only A-Z a-z 0-9 . _ : @ -")
    }
    return String(decoding: UnsafeBufferPointer(start: bytes, count: data.len), as: UTF8.self)
}

private func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return "0x\(digits[Int(byte >> 4)])\(digits[Int(byte & 0xF)])"
}

/// An optional enum field of a request: UNSPECIFIED is nil, an unknown value is an error.
func decodeOptionalEnum<E: ProtoMappedEnum>(
    _ value: E.Proto, as _: E.Type = E.self, field: @autoclosure () -> String
) throws(WireError) -> E? {
    if value.rawValue == 0 { return nil }
    guard let decoded = E(proto: value) else {
        throw .invalidArgument(
            "\(field()): \(Int32(bitPattern: value.rawValue)) is not a known \(E.protoName) value")
    }
    return decoded
}

/// A required enum field of a response: UNSPECIFIED and unknown values are errors.
func decodeRequiredEnum<E: ProtoMappedEnum>(
    _ value: E.Proto, as _: E.Type = E.self, field: @autoclosure () -> String
) throws(WireError) -> E {
    guard let decoded = E(proto: value) else {
        throw .internal(
            "\(field()): \(Int32(bitPattern: value.rawValue)) is not a valid \(E.protoName) value")
    }
    return decoded
}

/// The number of the first field protobuf-c kept as unknown in a message, among those
/// numbered `minimum` or more.
func firstUnknownField(of base: ProtobufCMessage, numberedAtLeast minimum: UInt32 = 1) -> UInt32? {
    for index in 0..<Int(base.n_unknown_fields) where base.unknown_fields[index].tag >= minimum {
        return base.unknown_fields[index].tag
    }
    return nil
}

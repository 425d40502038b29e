// The encoding of a lookup response (an `authz.v1.Response` whose result is a
// `LevelListing` or `AccessListing`), written by hand instead of through protobuf-c: a
// 1,000-item page would otherwise be built as 1,000 protobuf-c messages (twice, since the
// transports size a response before writing it) and cost more than computing the page. The
// sizes are arithmetic over the items and the bytes are written in one pass, in protobuf-c's
// order (fields by number, proto3 defaults omitted), so the frame is byte-identical to
// protobuf-c's (LookupCodecTests) and any protobuf library decodes it.

/// Writes one lookup response frame.
struct ListingEncoder {
    private let response: WireResponse
    private let result: WireResponse.LookupResult

    init(_ response: WireResponse, _ result: WireResponse.LookupResult) {
        self.response = response
        self.result = result
    }

    func withFrameWriter<R>(_ body: (_ frameLength: Int, _ write: (UnsafeMutableRawBufferPointer) -> Int) -> R) -> R {
        let statusLength = Self.statusLength(response.status)
        let listingLength = self.listingLength
        var payloadLength = 0
        if response.callId != 0 { payloadLength += 1 + Self.varintLength(response.callId) }
        payloadLength += 1 + Self.varintLength(UInt64(statusLength)) + statusLength
        if response.snapshotVersion != 0 { payloadLength += 1 + Self.varintLength(response.snapshotVersion) }
        payloadLength += 2 + Self.varintLength(UInt64(listingLength)) + listingLength
        let frameLength = FrameHeader.size + payloadLength
        return body(frameLength) { destination in
            precondition(destination.count >= frameLength, "\(destination.count)-byte buffer for a \(frameLength)-byte frame")
            FrameHeader.write(payloadLength: payloadLength, to: destination)
            var writer = Writer(destination.baseAddress! + FrameHeader.size)
            if response.callId != 0 { writer.varintField(1, response.callId) }
            writer.tag(2, wireType: 2)
            writer.varint(UInt64(statusLength))
            if response.status.code.rawValue != 0 { writer.varintField(1, UInt64(response.status.code.rawValue)) }
            writer.stringField(2, response.status.message)
            if response.snapshotVersion != 0 { writer.varintField(3, response.snapshotVersion) }
            writer.tag(fieldNumber, wireType: 2)
            writer.varint(UInt64(listingLength))
            writeListing(&writer)
            let written = FrameHeader.size + writer.offset(from: destination.baseAddress! + FrameHeader.size)
            precondition(written == frameLength, "wrote \(written) bytes of a \(frameLength)-byte frame")
            return frameLength
        }
    }

    /// The response's result field: 17, 18 or 19.
    private var fieldNumber: UInt32 {
        switch result {
        case .projects: 17
        case .projectAccess: 18
        case .assets: 19
        }
    }

    // MARK: Sizes

    @inline(__always)
    private static func varintLength(_ value: UInt64) -> Int {
        if value < 0x80 { return 1 }
        if value < 0x4000 { return 2 }
        return (64 &- value.leadingZeroBitCount &+ 6) / 7
    }

    private static func stringFieldLength(_ text: String) -> Int {
        let count = text.utf8.count
        return count == 0 ? 0 : 1 + varintLength(UInt64(count)) + count
    }

    private static func statusLength(_ status: WireStatus) -> Int {
        (status.code.rawValue == 0 ? 0 : 1 + varintLength(UInt64(status.code.rawValue))) + stringFieldLength(status.message)
    }

    /// An item's message length: id, then two enum values (never 0, always below 128).
    @inline(__always)
    private static func itemLength(_ idLength: Int, _ value: UInt32, _ reason: UInt32) -> Int {
        (idLength == 0 ? 0 : 1 + varintLength(UInt64(idLength)) + idLength) + (value == 0 ? 0 : 2) + (reason == 0 ? 0 : 2)
    }

    /// Calls `body` with each item's id bytes, proto value and proto reason, from whichever
    /// storage the listing has (its values, or the engine's entries and the id arena).
    @inline(__always)
    private static func forEachItem<Item: ListingItem>(
        _ listing: WireResponse.Listing<Item>, _ value: (Item) -> UInt32, _ entryValue: (Item.Entry) -> UInt32,
        _ body: (UnsafeRawBufferPointer, UInt32, UInt32) -> Void
    ) {
        switch listing.storage {
        case .values(let items):
            for item in items {
                var id = item.id
                id.withUTF8 { body(UnsafeRawBufferPointer($0), value(item), item.reason.proto.rawValue) }
            }
        case .snapshot(let entries, let ids):
            // The snapshot's id arena, alive while `ids` is (the listing holds it).
            for entry in entries {
                body(ids.utf8(at: entry.index), entryValue(entry), entry.reason.proto.rawValue)
            }
        }
    }

    private func forEachItem(_ body: (UnsafeRawBufferPointer, UInt32, UInt32) -> Void) {
        switch result {
        case .projects(let listing), .projectAccess(let listing):
            Self.forEachItem(listing, { $0.level.proto.rawValue }, { $0.level.proto.rawValue }, body)
        case .assets(let listing):
            Self.forEachItem(listing, { $0.access.proto.rawValue }, { $0.access.proto.rawValue }, body)
        }
    }

    private var listingLength: Int {
        var length = 0
        forEachItem { id, value, reason in
            let item = Self.itemLength(id.count, value, reason)
            length &+= 1 &+ Self.varintLength(UInt64(item)) &+ item
        }
        switch result {
        case .projects(let listing), .projectAccess(let listing): length += Self.trailerLength(listing)
        case .assets(let listing): length += Self.trailerLength(listing)
        }
        return length
    }

    /// Fields 2-6 of a listing.
    private static func trailerLength<Item: ListingItem>(_ listing: WireResponse.Listing<Item>) -> Int {
        stringFieldLength(listing.nextPageToken) + (listing.snapshotChanged ? 2 : 0)
            + (listing.pageSize == 0 ? 0 : 1 + varintLength(UInt64(listing.pageSize)))
            + (listing.pageSizeClamped ? 2 : 0) + (listing.reason == nil ? 0 : 2)
    }

    // MARK: Writing

    private func writeListing(_ writer: inout Writer) {
        forEachItem { id, value, reason in
            writer.tag(1, wireType: 2)
            writer.varint(UInt64(Self.itemLength(id.count, value, reason)))
            writer.bytesField(1, id)
            if value != 0 { writer.varintField(2, UInt64(value)) }
            if reason != 0 { writer.varintField(3, UInt64(reason)) }
        }
        switch result {
        case .projects(let listing), .projectAccess(let listing): Self.writeTrailer(listing, &writer)
        case .assets(let listing): Self.writeTrailer(listing, &writer)
        }
    }

    private static func writeTrailer<Item: ListingItem>(_ listing: WireResponse.Listing<Item>, _ writer: inout Writer) {
        writer.stringField(2, listing.nextPageToken)
        if listing.snapshotChanged { writer.varintField(3, 1) }
        if listing.pageSize != 0 { writer.varintField(4, UInt64(listing.pageSize)) }
        if listing.pageSizeClamped { writer.varintField(5, 1) }
        if let reason = listing.reason { writer.varintField(6, UInt64(reason.proto.rawValue)) }
    }

    /// Protobuf's wire format into memory sized beforehand.
    private struct Writer {
        private var cursor: UnsafeMutableRawPointer

        init(_ start: UnsafeMutableRawPointer) { cursor = start }

        func offset(from start: UnsafeMutableRawPointer) -> Int { start.distance(to: cursor) }

        @inline(__always) mutating func byte(_ value: UInt8) {
            cursor.storeBytes(of: value, as: UInt8.self)
            cursor += 1
        }

        @inline(__always) mutating func varint(_ value: UInt64) {
            var value = value
            while value >= 0x80 {
                byte(UInt8(truncatingIfNeeded: value) | 0x80)
                value >>= 7
            }
            byte(UInt8(value))
        }

        @inline(__always) mutating func tag(_ field: UInt32, wireType: UInt32) {
            varint(UInt64(field << 3 | wireType))
        }

        @inline(__always) mutating func varintField(_ field: UInt32, _ value: UInt64) {
            tag(field, wireType: 0)
            varint(value)
        }

        /// A string field; omitted when empty (proto3).
        mutating func stringField(_ field: UInt32, _ text: String) {
            var text = text
            text.withUTF8 { bytesField(field, UnsafeRawBufferPointer($0)) }
        }

        /// A string or bytes field; omitted when empty (proto3).
        @inline(__always) mutating func bytesField(_ field: UInt32, _ bytes: UnsafeRawBufferPointer) {
            guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
            tag(field, wireType: 2)
            varint(UInt64(bytes.count))
            if bytes.count <= 16 {
                // Ids are short: a byte loop beats a call to memmove.
                for i in 0 ..< bytes.count { cursor.storeBytes(of: bytes[i], toByteOffset: i, as: UInt8.self) }
            } else {
                cursor.copyMemory(from: source, byteCount: bytes.count)
            }
            cursor += bytes.count
        }
    }
}

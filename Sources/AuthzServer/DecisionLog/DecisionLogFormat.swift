// The JSON Lines format of the decision log, written by its writer thread.
//
// At full logging the writer formats as many lines as the server answers requests (about a
// million a second on two cores), so a line is built without Swift strings or arrays: the
// constant parts (`","method":"can_use"`, `","reason":"owner"`...) are rendered once into a
// table of byte fragments, ids and numbers are copied or written digit by digit, and
// everything goes into one raw buffer (LineBuffer) through a cursor.

import AuthzEngine
import AuthzWire

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A growable byte buffer written through a cursor. Each append checks the capacity (one
/// compare) and grows by doubling when needed, so no write can leave the buffer.
struct LineBuffer: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(64, capacity)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// Room for `extra` more bytes.
    @inline(__always)
    mutating func reserve(_ extra: Int) {
        if count + extra > capacity { grow(to: count + extra) }
    }

    private mutating func grow(to needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        newBase.update(from: base, count: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    @inline(__always)
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count)
        UnsafeMutableRawPointer(base + count).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }

    @inline(__always)
    mutating func append(_ text: StaticString) {
        append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// A number in decimal.
    mutating func append(decimal value: UInt64) {
        reserve(20)
        if value < 10 {
            base[count] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value)
            count += 1
            return
        }
        var digits = 0
        var rest = value
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        rest = value
        var index = count + digits - 1
        while rest > 0 {
            base[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
            rest /= 10
            index -= 1
        }
        count += digits
    }

    mutating func removeAll() { count = 0 }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// The bytes as an array (tests).
    var array: [UInt8] { withBytes { Array($0) } }
}

/// Formats decision slots (DecisionSlot's layout) as JSON Lines. One per writer thread (it
/// caches the current second's text); not shared between threads.
final class DecisionLogFormat {
    /// One fragment of the table: `length` bytes at `offset` of the arena.
    private struct Fragment {
        var offset: Int32
        var length: Int32
    }

    /// The fragment tables, each indexed by a raw value (0...255).
    private enum Table: Int, CaseIterable {
        case method, idName0, idName1, idName2, level, access, seat, role, reason, error
    }

    private let arena: UnsafeMutablePointer<UInt8>
    private let fragments: UnsafeMutablePointer<Fragment>
    /// The text of the last second formatted (`2026-12-01T11:40:00`): most lines share it.
    private var second: Int64 = -1
    private var secondText: (UInt64, UInt64, UInt64) = (0, 0, 0)
    private var secondLength = 0

    init() {
        var bytes: [UInt8] = []
        var table = [Fragment](repeating: Fragment(offset: 0, length: 0), count: Table.allCases.count * 256)
        func add(_ text: String) -> Fragment {
            defer { bytes.append(contentsOf: text.utf8) }
            return Fragment(offset: Int32(bytes.count), length: Int32(text.utf8.count))
        }
        func set(_ which: Table, _ raw: Int, _ text: String) { table[which.rawValue * 256 + raw] = add(text) }
        // Raw values no case has (a slot is only ever written from a real case, so this is
        // defensive) print as "?", and an unknown error code as UNKNOWN; an id name a method
        // does not have is empty (skipped).
        for (which, name) in [(Table.level, "level"), (.access, "access"), (.seat, "seat"), (.reason, "reason")] {
            let unknown = add(#","\#(name)":"?""#)
            for raw in 0..<256 { table[which.rawValue * 256 + raw] = unknown }
        }
        let unknownError = add(#","error":"UNKNOWN""#)
        for raw in 0..<256 { table[Table.error.rawValue * 256 + raw] = unknownError }
        for method in DecisionMethod.allCases {
            set(.method, Int(method.rawValue), #","method":"\#(method.name)""#)
            for (index, name) in method.idNames.enumerated() {
                set([Table.idName0, .idName1, .idName2][index], Int(method.rawValue), #",""#  + name + #"":""#)
            }
        }
        for level in Level.allCases { set(.level, Int(level.rawValue), #","level":"\#(level.name)""#) }
        for access in Access.allCases { set(.access, Int(access.rawValue), #","access":"\#(access.name)""#) }
        for seat in Seat.allCases { set(.seat, Int(seat.rawValue), #","seat":"\#(seat.name)""#) }
        for role in Role.allCases { set(.role, Int(role.rawValue), #","role":"\#(role.name)""#) }
        for reason in Reason.allCases { set(.reason, Int(reason.rawValue), #","reason":"\#(reason.name)""#) }
        for code in RPCCode.allCases where code.rawValue < 256 {
            set(.error, Int(code.rawValue), #","error":"\#(code.name)""#)
        }
        arena = .allocate(capacity: bytes.count)
        arena.initialize(from: bytes, count: bytes.count)
        fragments = .allocate(capacity: table.count)
        fragments.initialize(from: table, count: table.count)
    }

    deinit {
        arena.deallocate()
        fragments.deallocate()
    }

    @inline(__always)
    private func fragment(_ which: Table, _ raw: UInt8) -> UnsafeRawBufferPointer {
        let entry = fragments[which.rawValue * 256 + Int(raw)]
        return UnsafeRawBufferPointer(start: arena + Int(entry.offset), count: Int(entry.length))
    }

    /// Appends the line of `slot` (ending in a newline).
    func append(_ slot: UnsafeRawPointer, to out: inout LineBuffer) {
        let method = slot.load(fromByteOffset: DecisionSlot.method, as: UInt8.self)
        out.append(#"{"time":""#)
        appendTime(slot.load(fromByteOffset: DecisionSlot.unixNanos, as: Int64.self), to: &out)
        out.append(#"","call_id":"#)
        out.append(decimal: slot.load(fromByteOffset: DecisionSlot.callId, as: UInt64.self))
        out.append(#","peer_pid":"#)
        out.append(decimal: UInt64(max(0, slot.load(fromByteOffset: DecisionSlot.pid, as: Int32.self))))
        out.append(#","peer_uid":"#)
        out.append(decimal: UInt64(slot.load(fromByteOffset: DecisionSlot.uid, as: UInt32.self)))
        out.append(fragment(.method, method))
        let batch = slot.load(fromByteOffset: DecisionSlot.batchIndex, as: UInt16.self)
        if batch != DecisionSlot.noBatch {
            out.append(#","batch_index":"#)
            out.append(decimal: UInt64(batch))
        }
        let present = slot.load(fromByteOffset: DecisionSlot.idPresent, as: UInt8.self)
        for (index, table) in [(0, Table.idName0), (1, .idName1), (2, .idName2)] where present & (1 << index) != 0 {
            let name = fragment(table, method)
            guard name.count > 0 else { continue }
            out.append(name)
            let length = Int(slot.load(fromByteOffset: DecisionSlot.idLengths + index, as: UInt8.self))
            Self.appendEscaped(
                UnsafeRawBufferPointer(start: slot + DecisionSlot.idBytes + index * DecisionSlot.maxIdBytes, count: length),
                to: &out)
            out.append(UInt8(ascii: "\""))
        }
        if slot.load(fromByteOffset: DecisionSlot.idCut, as: UInt8.self) != 0 { out.append(#","ids_cut":true"#) }
        let value = slot.load(fromByteOffset: DecisionSlot.value, as: UInt8.self)
        let reason = slot.load(fromByteOffset: DecisionSlot.reason, as: UInt8.self)
        switch DecisionSlot.Kind(rawValue: slot.load(fromByteOffset: DecisionSlot.kind, as: UInt8.self)) {
        case .level:
            out.append(fragment(.level, value))
            appendAllowed(slot, to: &out)
            out.append(fragment(.reason, reason))
        case .access:
            out.append(fragment(.access, value))
            appendAllowed(slot, to: &out)
            out.append(fragment(.reason, reason))
        case .seat:
            out.append(fragment(.seat, value))
            out.append(slot.load(fromByteOffset: DecisionSlot.paid, as: UInt8.self) != 0 ? #","paid":true"# : #","paid":false"#)
            let role = slot.load(fromByteOffset: DecisionSlot.role, as: UInt8.self)
            if Role(rawValue: role) != nil { out.append(fragment(.role, role)) }
        case .capabilities:
            out.append(#","capabilities":"#)
            out.append(decimal: UInt64(slot.load(fromByteOffset: DecisionSlot.count, as: UInt32.self)))
        case .listing:
            out.append(#","items":"#)
            out.append(decimal: UInt64(slot.load(fromByteOffset: DecisionSlot.count, as: UInt32.self)))
        case .error, nil:
            out.append(fragment(.error, value))
        }
        out.append(#","snapshot_version":"#)
        out.append(decimal: slot.load(fromByteOffset: DecisionSlot.snapshotVersion, as: UInt64.self))
        out.append(#","latency_us":"#)
        let nanos = max(0, slot.load(fromByteOffset: DecisionSlot.latencyNanos, as: Int64.self))
        out.append(decimal: UInt64(nanos / 1000))
        out.append(UInt8(ascii: "."))
        out.append(UInt8(ascii: "0") + UInt8((nanos % 1000) / 100))
        out.append("}\n")
    }

    /// Appends the line of `slot` to an array (tests).
    static func append(_ slot: UnsafeRawPointer, to out: inout [UInt8]) {
        var buffer = LineBuffer(capacity: 1024)
        DecisionLogFormat().append(slot, to: &buffer)
        out.append(contentsOf: buffer.array)
    }

    private func appendAllowed(_ slot: UnsafeRawPointer, to out: inout LineBuffer) {
        switch slot.load(fromByteOffset: DecisionSlot.asked, as: UInt8.self) {
        case 1: out.append(#","allowed":true"#)
        case 2: out.append(#","allowed":false"#)
        default: break
        }
    }

    /// An id's bytes as a JSON string body: printable ASCII as is (but `"` and `\`), every
    /// other byte as \u00XX (ids that are not valid come here only in errors).
    static func appendEscaped(_ bytes: UnsafeRawBufferPointer, to out: inout LineBuffer) {
        var plain = true
        for byte in bytes where byte < 0x20 || byte >= 0x7f || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
            plain = false
            break
        }
        if plain {
            out.append(bytes)
            return
        }
        let hex: StaticString = "0123456789abcdef"
        for byte in bytes {
            if byte >= 0x20 && byte < 0x7f && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") {
                out.append(byte)
            } else {
                out.append(#"\u00"#)
                out.append(hex.utf8Start[Int(byte >> 4)])
                out.append(hex.utf8Start[Int(byte & 15)])
            }
        }
    }

    /// RFC 3339 UTC with microseconds: 2026-12-01T11:40:00.123456Z.
    private func appendTime(_ unixNanos: Int64, to out: inout LineBuffer) {
        let second = unixNanos / 1_000_000_000
        let micros = Int((unixNanos % 1_000_000_000) / 1000)
        if second != self.second {
            var text = LineBuffer(capacity: 64)
            var seconds = time_t(second)
            var parts = tm()
            gmtime_r(&seconds, &parts)
            func two(_ value: Int32) {
                text.append(UInt8(ascii: "0") + UInt8(value / 10 % 10))
                text.append(UInt8(ascii: "0") + UInt8(value % 10))
            }
            text.append(decimal: UInt64(max(0, parts.tm_year + 1900)))
            text.append(UInt8(ascii: "-"))
            two(parts.tm_mon + 1)
            text.append(UInt8(ascii: "-"))
            two(parts.tm_mday)
            text.append(UInt8(ascii: "T"))
            two(parts.tm_hour)
            text.append(UInt8(ascii: ":"))
            two(parts.tm_min)
            text.append(UInt8(ascii: ":"))
            two(parts.tm_sec)
            // At most 24 bytes (a year of up to 10 digits): kept in three words.
            var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
            let length = min(text.count, MemoryLayout.size(ofValue: words))
            text.withBytes { bytes in
                withUnsafeMutableBytes(of: &words) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[..<length])) }
            }
            self.second = second
            secondText = words
            secondLength = length
        }
        withUnsafeBytes(of: secondText) { out.append(UnsafeRawBufferPointer(rebasing: $0[..<secondLength])) }
        out.reserve(8)
        out.append(UInt8(ascii: "."))
        var divisor = 100_000
        while divisor > 0 {
            out.append(UInt8(ascii: "0") + UInt8(micros / divisor % 10))
            divisor /= 10
        }
        out.append(UInt8(ascii: "Z"))
    }
}

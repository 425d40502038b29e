// The decision log's per-loop buffer: a single-producer, single-consumer ring of fixed-size
// binary records. The event loop (producer) copies a decision into the next free slot and
// publishes it with one release store; the writer thread (consumer) formats published slots
// as JSON and frees them with one release store. Nothing on the request path allocates,
// formats, locks or waits: when the ring is full the decision is dropped and counted.

import AuthzEngine
import AuthzWire
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One decision as the request path records it (what a slot holds, before formatting).
struct DecisionRecord {
    enum Outcome: Equatable {
        case level(Level, Reason, allowed: Bool?)
        case access(Access, Reason, allowed: Bool?)
        case seat(Seat, paid: Bool, role: Role?)
        case capabilities(count: Int)
        case listing(items: Int)
        case error(RPCCode)

        /// A denial: a yes/no question answered no, an answer of none, or an error.
        var isDenial: Bool {
            switch self {
            case .level(let level, _, let allowed): allowed.map { !$0 } ?? (level == .none)
            case .access(let access, _, let allowed): allowed.map { !$0 } ?? (access == .none)
            case .seat(let seat, _, _): seat == .none
            case .capabilities(let count): count == 0
            case .listing: false
            case .error: true
            }
        }
    }

    var method: DecisionMethod
    var callId: UInt64
    var snapshotVersion: UInt64
    /// Wall-clock time of the answer, nanoseconds since the Unix epoch.
    var unixNanos: Int64
    /// From the frame's arrival to the answer queued.
    var latencyNanos: Int64
    var pid: Int32
    var uid: UInt32
    /// The check's position in its Batch; nil for a single call.
    var batchIndex: Int?
    var outcome: Outcome
}

/// The slot layout (byte offsets). Ids are stored up to `maxIdBytes` each (longer ones are
/// invalid and only ever appear in errors: they are cut and marked).
enum DecisionSlot {
    static let size = 448
    static let maxIdBytes = 128
    static let maxIds = 3

    static let unixNanos = 0, callId = 8, snapshotVersion = 16, latencyNanos = 24, pid = 32, uid = 36
    static let method = 40, kind = 41, value = 42, reason = 43, asked = 44, role = 45, batchIndex = 46
    static let idLengths = 48, idPresent = 51, idCut = 52, paid = 53, count = 56, idBytes = 64

    enum Kind: UInt8 { case level = 0, access, seat, capabilities, listing, error }
    static let none: UInt8 = 255
    static let noBatch: UInt16 = .max

    /// Writes `record` and its ids into the slot at `slot`.
    static func write(
        _ record: DecisionRecord, ids: (UnsafeRawBufferPointer?, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?),
        into slot: UnsafeMutableRawPointer
    ) {
        slot.storeBytes(of: record.unixNanos, toByteOffset: unixNanos, as: Int64.self)
        slot.storeBytes(of: record.callId, toByteOffset: callId, as: UInt64.self)
        slot.storeBytes(of: record.snapshotVersion, toByteOffset: snapshotVersion, as: UInt64.self)
        slot.storeBytes(of: record.latencyNanos, toByteOffset: latencyNanos, as: Int64.self)
        slot.storeBytes(of: record.pid, toByteOffset: pid, as: Int32.self)
        slot.storeBytes(of: record.uid, toByteOffset: uid, as: UInt32.self)
        slot.storeBytes(of: record.method.rawValue, toByteOffset: method, as: UInt8.self)
        let batch = record.batchIndex.map { UInt16(clamping: $0) } ?? noBatch
        slot.storeBytes(of: batch, toByteOffset: batchIndex, as: UInt16.self)
        var kind = Kind.error, value: UInt8 = 0, reason = none, asked: UInt8 = 0, role = none, paid: UInt8 = 0
        var count: UInt32 = 0
        switch record.outcome {
        case .level(let level, let why, let allowed):
            (kind, value, reason) = (.level, level.rawValue, why.rawValue)
            asked = allowed.map { $0 ? 1 : 2 } ?? 0
        case .access(let access, let why, let allowed):
            (kind, value, reason) = (.access, access.rawValue, why.rawValue)
            asked = allowed.map { $0 ? 1 : 2 } ?? 0
        case .seat(let seat, let isPaid, let resolved):
            (kind, value) = (.seat, seat.rawValue)
            paid = isPaid ? 1 : 0
            role = resolved?.rawValue ?? none
        case .capabilities(let n):
            kind = .capabilities
            count = UInt32(clamping: n)
        case .listing(let n):
            kind = .listing
            count = UInt32(clamping: n)
        case .error(let code):
            (kind, value) = (.error, UInt8(clamping: code.rawValue))
        }
        slot.storeBytes(of: kind.rawValue, toByteOffset: Self.kind, as: UInt8.self)
        slot.storeBytes(of: value, toByteOffset: Self.value, as: UInt8.self)
        slot.storeBytes(of: reason, toByteOffset: Self.reason, as: UInt8.self)
        slot.storeBytes(of: asked, toByteOffset: Self.asked, as: UInt8.self)
        slot.storeBytes(of: role, toByteOffset: Self.role, as: UInt8.self)
        slot.storeBytes(of: paid, toByteOffset: Self.paid, as: UInt8.self)
        slot.storeBytes(of: count, toByteOffset: Self.count, as: UInt32.self)
        var present: UInt8 = 0, cut: UInt8 = 0
        func store(_ id: UnsafeRawBufferPointer?, _ index: Int) {
            guard let id else {
                slot.storeBytes(of: 0, toByteOffset: idLengths + index, as: UInt8.self)
                return
            }
            present |= 1 << index
            let length = min(id.count, maxIdBytes)
            if id.count > maxIdBytes { cut |= 1 << index }
            slot.storeBytes(of: UInt8(length), toByteOffset: idLengths + index, as: UInt8.self)
            if length > 0, let base = id.baseAddress {
                (slot + idBytes + index * maxIdBytes).copyMemory(from: base, byteCount: length)
            }
        }
        store(ids.0, 0)
        store(ids.1, 1)
        store(ids.2, 2)
        slot.storeBytes(of: present, toByteOffset: idPresent, as: UInt8.self)
        slot.storeBytes(of: cut, toByteOffset: idCut, as: UInt8.self)
    }
}

/// One loop's ring. `record` is called only from the loop's thread, `drain` only from the
/// writer's; the two meet only through `head` and `tail`.
final class DecisionRing: @unchecked Sendable {
    let capacity: Int
    private let mask: Int
    private let slots: UnsafeMutableRawPointer
    /// Slots published by the producer (monotonic count); stored by the producer only.
    private let head = Atomic<Int>(0)
    /// Slots consumed by the writer (monotonic count); stored by the writer only.
    private let tail = Atomic<Int>(0)
    /// Decisions dropped because the ring was full; stored by the producer only.
    private let droppedCount = Atomic<UInt64>(0)

    // The producer's own view (loop thread only): no shared cache line is read per record
    // unless the ring looks full.
    @exclusivity(unchecked) private var producerHead = 0
    @exclusivity(unchecked) private var knownTail = 0
    /// The sampling generator's state (loop thread only).
    @exclusivity(unchecked) var random: UInt64

    init(capacity requested: Int, seed: UInt64) {
        var capacity = 16
        while capacity < requested { capacity <<= 1 }
        self.capacity = capacity
        mask = capacity - 1
        slots = .allocate(byteCount: capacity * DecisionSlot.size, alignment: 64)
        random = seed | 1
    }

    deinit {
        slots.deallocate()
    }

    var dropped: UInt64 { droppedCount.load(ordering: .relaxed) }

    /// Decisions published and not yet drained (approximate when read from a third thread).
    var pending: Int { head.load(ordering: .relaxed) - tail.load(ordering: .relaxed) }

    /// Copies a decision into the next slot and publishes it; false (and counted) when the
    /// ring is full. Producer thread only.
    @discardableResult
    func record(
        _ record: DecisionRecord,
        ids: (UnsafeRawBufferPointer?, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?)
    ) -> Bool {
        if producerHead - knownTail >= capacity {
            knownTail = tail.load(ordering: .acquiring)
            if producerHead - knownTail >= capacity {
                droppedCount.store(droppedCount.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
                return false
            }
        }
        DecisionSlot.write(record, ids: ids, into: slots + (producerHead & mask) * DecisionSlot.size)
        producerHead += 1
        head.store(producerHead, ordering: .releasing)
        return true
    }

    /// The next sampling draw, uniform in UInt64 (xorshift64*). Producer thread only.
    @inline(__always)
    func nextRandom() -> UInt64 {
        random ^= random >> 12
        random ^= random << 25
        random ^= random >> 27
        return random &* 0x2545_F491_4F6C_DD1D
    }

    /// Hands every published slot to `body`, in order, then frees them. Writer thread only.
    /// Returns how many were drained.
    @discardableResult
    func drain(_ body: (UnsafeRawPointer) -> Void) -> Int {
        let end = head.load(ordering: .acquiring)
        let start = tail.load(ordering: .relaxed)
        var position = start
        while position < end {
            body(UnsafeRawPointer(slots + (position & mask) * DecisionSlot.size))
            position += 1
        }
        if position != start { tail.store(position, ordering: .releasing) }
        return position - start
    }
}

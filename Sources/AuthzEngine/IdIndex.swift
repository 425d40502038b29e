// An immutable map from external string ids to dense Int32 indexes.
//
// Ids are stored once, back to back, in one byte arena; an open-addressing table (power-of-
// two size, load factor ≤ 0.5, linear probing) finds them by a 64-bit FNV-1a hash. Each
// 32-byte slot holds the first 16 bytes of its id, the id's length, a hash tag and the entry
// index, so looking up an id of up to 16 bytes (nearly all of them) reads one cache line:
// no pointer chasing into the arena. Longer ids compare their tail against the arena.
//
// Lookups take raw UTF-8 bytes, so the server can look up an id straight out of a decoded
// protobuf message without creating a Swift String, and they never allocate.

public struct IdIndex: Sendable {
    /// One hash-table slot. `entry == 0` marks an empty slot.
    @usableFromInline
    struct Slot: Sendable {
        /// The id's first 16 bytes, zero-padded.
        var head0: UInt64 = 0
        var head1: UInt64 = 0
        /// `hash >> 32` (upper half) | id length (lower half).
        var tagAndLength: UInt64 = 0
        /// Entry index + 1; 0 = empty.
        var entry: UInt64 = 0
    }

    /// All ids' bytes, concatenated in index order.
    private let arena: [UInt8]
    /// `offsets[i] ..< offsets[i + 1]` are the bytes of id `i` in `arena`.
    private let offsets: [Int32]
    private let slots: [Slot]
    private let mask: Int

    /// The number of ids.
    public var count: Int { offsets.count - 1 }

    /// Builds the index; `ids[i]` gets index `i`. Duplicate ids keep the first index.
    public init(_ ids: [String]) {
        var duplicates: [Int] = []
        self.init(ids, duplicates: &duplicates)
    }

    /// Builds the index; the indexes of later copies of a duplicate id go to `duplicates`.
    public init(_ ids: [String], duplicates: inout [Int]) {
        var arena: [UInt8] = []
        arena.reserveCapacity(ids.count * 12)
        var offsets: [Int32] = [0]
        offsets.reserveCapacity(ids.count + 1)
        for id in ids {
            arena.append(contentsOf: id.utf8)
            precondition(arena.count < Int(Int32.max), "id arena exceeds 2 GiB")
            offsets.append(Int32(arena.count))
        }
        var capacity = 8
        while capacity < ids.count * 2 { capacity <<= 1 }
        var slots = [Slot](repeating: Slot(), count: capacity)
        let mask = capacity - 1
        arena.withUnsafeBytes { bytes in
            for entry in 0 ..< ids.count {
                let key = UnsafeRawBufferPointer(rebasing: bytes[Int(offsets[entry]) ..< Int(offsets[entry + 1])])
                let hash = Self.hash(key)
                let candidate = Self.slot(for: key, hash: hash, entry: entry)
                var position = Int(truncatingIfNeeded: hash) & mask
                var duplicate = false
                while slots[position].entry != 0 {
                    if Self.matches(slots[position], candidate, key, arena: bytes, offsets: offsets) {
                        duplicate = true
                        break
                    }
                    position = (position + 1) & mask
                }
                if duplicate {
                    duplicates.append(entry)
                } else {
                    slots[position] = candidate
                }
            }
        }
        self.arena = arena
        self.offsets = offsets
        self.slots = slots
        self.mask = mask
    }

    /// The index of the id spelled by `bytes` (UTF-8), or nil.
    public func index(of bytes: UnsafeRawBufferPointer) -> Int32? {
        let found = lookup(bytes)
        return found >= 0 ? found : nil
    }

    /// The index of `id`, or nil.
    public func index(of id: String) -> Int32? {
        let found = lookup(id)
        return found >= 0 ? found : nil
    }

    /// The index of `id`, or -1.
    public func lookup(_ id: String) -> Int32 {
        if let found = id.utf8.withContiguousStorageIfAvailable({ lookup(UnsafeRawBufferPointer($0)) }) {
            return found
        }
        var copy = id
        return copy.withUTF8 { lookup(UnsafeRawBufferPointer($0)) }
    }

    /// The index of the id spelled by `bytes`, or -1. Never allocates.
    public func lookup(_ bytes: UnsafeRawBufferPointer) -> Int32 {
        let hash = Self.hash(bytes)
        let probe = Self.slot(for: bytes, hash: hash, entry: 0)
        var position = Int(truncatingIfNeeded: hash) & mask
        return slots.withUnsafeBufferPointer { table in
            arena.withUnsafeBytes { arenaBytes in
                while true {
                    let slot = table[position]
                    if slot.entry == 0 { return -1 }
                    if Self.matches(slot, probe, bytes, arena: arenaBytes, offsets: offsets) {
                        return Int32(truncatingIfNeeded: slot.entry - 1)
                    }
                    position = (position + 1) & mask
                }
            }
        }
    }

    /// The id at `index` (allocates a String: for explanations and exports, not the hot path).
    public func id(at index: Int32) -> String {
        let start = Int(offsets[Int(index)])
        let end = Int(offsets[Int(index) + 1])
        return String(decoding: arena[start ..< end], as: UTF8.self)
    }

    /// Every id in index order.
    public var ids: [String] { (0 ..< Int32(count)).map { id(at: $0) } }

    /// Approximate heap bytes held.
    public var footprint: Int {
        arena.capacity + offsets.capacity * 4 + slots.capacity * MemoryLayout<Slot>.stride
    }

    /// The slot an id would occupy (entry + 1 in `entry`).
    @inline(__always)
    private static func slot(for key: UnsafeRawBufferPointer, hash: UInt64, entry: Int) -> Slot {
        var slot = Slot()
        let count = key.count
        if count >= 16 {
            slot.head0 = key.loadUnaligned(as: UInt64.self)
            slot.head1 = key.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        } else if count > 0 {
            withUnsafeMutableBytes(of: &slot.head0) { head0 in
                withUnsafeMutableBytes(of: &slot.head1) { head1 in
                    for i in 0 ..< count {
                        if i < 8 { head0[i] = key[i] } else { head1[i - 8] = key[i] }
                    }
                }
            }
        }
        slot.tagAndLength = (hash >> 32) << 32 | UInt64(UInt32(truncatingIfNeeded: count))
        slot.entry = UInt64(entry + 1)
        return slot
    }

    /// Whether `stored` holds the id `key` (whose probe slot is `probe`).
    @inline(__always)
    private static func matches(
        _ stored: Slot, _ probe: Slot, _ key: UnsafeRawBufferPointer,
        arena: UnsafeRawBufferPointer, offsets: [Int32]
    ) -> Bool {
        guard stored.tagAndLength == probe.tagAndLength, stored.head0 == probe.head0, stored.head1 == probe.head1 else {
            return false
        }
        let count = key.count
        if count <= 16 { return true }
        // Longer ids: compare the tail against the arena.
        let start = Int(offsets[Int(stored.entry) - 1])
        guard let base = arena.baseAddress, let other = key.baseAddress else { return false }
        var i = 16
        while i + 8 <= count {
            if (base + start + i).loadUnaligned(as: UInt64.self) != (other + i).loadUnaligned(as: UInt64.self) { return false }
            i += 8
        }
        while i < count {
            if base.load(fromByteOffset: start + i, as: UInt8.self) != other.load(fromByteOffset: i, as: UInt8.self) { return false }
            i += 1
        }
        return true
    }

    /// 64-bit FNV-1a, finished with a multiply-xorshift so the low bits (the slot) mix well.
    @inline(__always)
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }
}

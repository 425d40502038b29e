// An immutable map from external string ids to dense Int32 indexes.
//
// Ids are stored once, back to back, in one byte arena; an open-addressing table (load
// factor ≤ 2/3, linear probing, any size: the slot is picked by a multiply-shift of the
// hash, not a mask) finds them by a 64-bit FNV-1a hash. Each 16-byte slot holds the first
// 8 bytes of its id, a 24-bit hash tag, the id's length and the entry index, so looking up
// an id of up to 8 bytes reads one slot (usually one cache line): no pointer chasing into
// the arena. Longer ids compare their tail against the arena (two more reads, of tables
// small enough to stay cached). Small slots keep the table small — 2.4 MB for 100k ids —
// so hot ids stay in cache; lookups on large workspaces are bound by these misses.
//
// Lookups take raw UTF-8 bytes, so the server can look up an id straight out of a decoded
// protobuf message without creating a Swift String, and they never allocate.

public struct IdIndex: Sendable {
    /// One hash-table slot. `entry == 0` marks an empty slot.
    @usableFromInline
    struct Slot: Sendable {
        /// The id's first 8 bytes, zero-padded.
        var head: UInt64 = 0
        /// `hash >> 40` (bits 40-63) | min(length, 255) (bits 32-39) | entry index + 1 (bits
        /// 0-31); 0 = empty.
        var meta: UInt64 = 0

        @inline(__always) var entry: Int { Int(meta & 0xffff_ffff) - 1 }
        @inline(__always) var isEmpty: Bool { meta == 0 }
    }

    /// All ids' bytes, concatenated in index order.
    @usableFromInline let arena: FlatTable<UInt8>
    /// `offsets[i] ..< offsets[i + 1]` are the bytes of id `i` in `arena`.
    @usableFromInline let offsets: FlatTable<Int32>
    private let slots: FlatTable<Slot>
    private let capacity: Int

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
        precondition(ids.count < Int(Int32.max), "too many ids")
        let capacity = max(8, ids.count + ids.count / 2)
        var slots = [Slot](repeating: Slot(), count: capacity)
        arena.withUnsafeBytes { bytes in
            offsets.withUnsafeBufferPointer { offsetTable in
                for entry in 0 ..< ids.count {
                    let key = UnsafeRawBufferPointer(rebasing: bytes[Int(offsets[entry]) ..< Int(offsets[entry + 1])])
                    let hash = Self.hash(key)
                    let candidate = Self.slot(for: key, hash: hash, entry: entry)
                    var position = Self.position(hash, capacity)
                    var duplicate = false
                    while !slots[position].isEmpty {
                        if Self.matches(slots[position], candidate, key, arena: bytes, offsets: offsetTable) {
                            duplicate = true
                            break
                        }
                        position += 1
                        if position == capacity { position = 0 }
                    }
                    if duplicate {
                        duplicates.append(entry)
                    } else {
                        slots[position] = candidate
                    }
                }
            }
        }
        self.arena = FlatTable(arena)
        self.offsets = FlatTable(offsets)
        self.slots = FlatTable(slots)
        self.capacity = capacity
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
        let probe = Self.slot(for: bytes, hash: hash, entry: -1)
        let capacity = capacity
        var position = Self.position(hash, capacity)
        let table = slots.base
        let arenaBytes = UnsafeRawBufferPointer(arena.buffer)
        let offsets = offsets.buffer
        while true {
            let slot = table[position]
            if slot.isEmpty { return -1 }
            if Self.matches(slot, probe, bytes, arena: arenaBytes, offsets: offsets) {
                return Int32(truncatingIfNeeded: slot.entry)
            }
            position += 1
            if position == capacity { position = 0 }
        }
    }

    /// Reads the slot `bytes` hashes to and returns a word of it, so a `lookup` soon after
    /// finds it in cache. Issued for several ids before their lookups, the loads overlap
    /// instead of waiting for memory one after the other.
    @inline(__always) public func touch(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        slots.base[Self.position(Self.hash(bytes), capacity)].meta
    }

    /// The id at `index` (allocates a String: for explanations and exports, not the hot path).
    public func id(at index: Int32) -> String {
        precondition(index >= 0 && Int(index) < count, "id index out of range")
        let start = Int(offsets[Int(index)])
        let end = Int(offsets[Int(index) + 1])
        return String(decoding: UnsafeBufferPointer(rebasing: arena.buffer[start ..< end]), as: UTF8.self)
    }

    /// Calls `body` with the UTF-8 bytes of the id at `index` (no copy; valid inside `body`).
    @inline(__always)
    public func withUTF8<R>(at index: Int32, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        precondition(index >= 0 && Int(index) < count, "id index out of range")
        let start = Int(offsets[Int(index)])
        let end = Int(offsets[Int(index) + 1])
        return try body(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(arena.buffer)[start ..< end]))
    }

    /// The UTF-8 bytes of the id at `index`, in place: valid as long as this index (its
    /// snapshot) is alive. Inlinable: the wire encoder reads every listed id through it.
    @inlinable
    public func utf8(at index: Int32) -> UnsafeRawBufferPointer {
        precondition(index >= 0 && Int(index) < count, "id index out of range")
        let start = Int(offsets[Int(index)])
        let end = Int(offsets[Int(index) + 1])
        return UnsafeRawBufferPointer(start: UnsafeRawPointer(arena.base) + start, count: end - start)
    }

    /// For an index built from ids in ascending byte order (as the snapshot builds them): the
    /// first index whose id sorts after `bytes` in byte order, or `count` if none does. A
    /// binary search over the arena: O(log count) comparisons, whatever `bytes` holds.
    public func firstIndex(after bytes: UnsafeRawBufferPointer) -> Int32 {
        var low = 0
        var high = count
        let arenaBytes = UnsafeRawBufferPointer(arena.buffer)
        let offsets = offsets.buffer
        while low < high {
            let mid = (low + high) >> 1
            let id = UnsafeRawBufferPointer(rebasing: arenaBytes[Int(offsets[mid]) ..< Int(offsets[mid + 1])])
            if Self.compare(id, bytes) <= 0 { low = mid + 1 } else { high = mid }
        }
        return Int32(low)
    }

    /// Byte-order comparison: negative, zero or positive as `a` sorts before, with or after `b`.
    static func compare(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
        let common = min(a.count, b.count)
        var i = 0
        while i < common {
            let x = a[i], y = b[i]
            if x != y { return x < y ? -1 : 1 }
            i += 1
        }
        return a.count - b.count
    }

    /// Every id in index order.
    public var ids: [String] { (0 ..< Int32(count)).map { id(at: $0) } }

    /// Approximate heap bytes held.
    public var footprint: Int {
        arena.footprint + offsets.footprint + slots.footprint
    }

    /// The home slot of `hash` in a table of `capacity` slots (multiply-shift range reduction
    /// of the hash's low 32 bits; the tag uses the high bits).
    @inline(__always)
    private static func position(_ hash: UInt64, _ capacity: Int) -> Int {
        Int(truncatingIfNeeded: ((hash & 0xffff_ffff) &* UInt64(capacity)) >> 32)
    }

    /// The slot an id would occupy (`entry` -1 for a probe).
    @inline(__always)
    private static func slot(for key: UnsafeRawBufferPointer, hash: UInt64, entry: Int) -> Slot {
        var slot = Slot()
        let count = key.count
        if count >= 8 {
            slot.head = key.loadUnaligned(as: UInt64.self)
        } else if count > 0 {
            withUnsafeMutableBytes(of: &slot.head) { head in
                for i in 0 ..< count { head[i] = key[i] }
            }
        }
        slot.meta = (hash >> 40) << 40 | UInt64(min(count, 255)) << 32 | UInt64(UInt32(truncatingIfNeeded: entry + 1))
        return slot
    }

    /// Whether `stored` holds the id `key` (whose probe slot is `probe`).
    @inline(__always)
    private static func matches(
        _ stored: Slot, _ probe: Slot, _ key: UnsafeRawBufferPointer,
        arena: UnsafeRawBufferPointer, offsets: UnsafeBufferPointer<Int32>
    ) -> Bool {
        guard stored.meta >> 32 == probe.meta >> 32, stored.head == probe.head else { return false }
        let count = key.count
        if count <= 8 { return true }
        // Longer ids: compare the length and the tail against the arena.
        let entry = stored.entry
        let start = Int(offsets[entry])
        guard Int(offsets[entry + 1]) - start == count else { return false }
        guard let base = arena.baseAddress, let other = key.baseAddress else { return false }
        var i = 8
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

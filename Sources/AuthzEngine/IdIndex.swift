// An immutable map from external string ids to dense Int32 indexes.
//
// Ids are stored once, back to back, in one byte arena; an open-addressing table of
// entry indexes (power-of-two size, load factor ≤ 0.5) finds them by a 64-bit FNV-1a hash.
// Lookups take raw UTF-8 bytes, so the server can look up an id straight out of a decoded
// protobuf message without creating a Swift String, and they never allocate.

public struct IdIndex: Sendable {
    /// All ids' bytes, concatenated in index order.
    private let arena: [UInt8]
    /// `offsets[i] ..< offsets[i + 1]` are the bytes of id `i` in `arena`.
    private let offsets: [Int32]
    /// Full hash of each id, compared before the bytes.
    private let hashes: [UInt64]
    /// Entry index + 1 per slot; 0 marks an empty slot.
    private let slots: [Int32]
    private let mask: Int

    /// The number of ids.
    public var count: Int { offsets.count - 1 }

    /// Builds the index; `ids[i]` gets index `i`. Duplicate ids keep the first index and are
    /// returned in `duplicates` (indexes of the later copies).
    public init(_ ids: [String]) {
        var duplicates: [Int] = []
        self.init(ids, duplicates: &duplicates)
    }

    public init(_ ids: [String], duplicates: inout [Int]) {
        var arena: [UInt8] = []
        arena.reserveCapacity(ids.count * 12)
        var offsets: [Int32] = [0]
        offsets.reserveCapacity(ids.count + 1)
        var hashes: [UInt64] = []
        hashes.reserveCapacity(ids.count)
        for id in ids {
            let start = arena.count
            arena.append(contentsOf: id.utf8)
            precondition(arena.count < Int(Int32.max), "id arena exceeds 2 GiB")
            offsets.append(Int32(arena.count))
            hashes.append(arena.withUnsafeBufferPointer { Self.hash(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: $0[start...]))) })
        }
        var capacity = 8
        while capacity < ids.count * 2 { capacity <<= 1 }
        var slots = [Int32](repeating: 0, count: capacity)
        let mask = capacity - 1
        arena.withUnsafeBufferPointer { bytes in
            for entry in 0 ..< ids.count {
                let hash = hashes[entry]
                var slot = Int(truncatingIfNeeded: hash) & mask
                var duplicate = false
                while slots[slot] != 0 {
                    let other = Int(slots[slot] - 1)
                    if hashes[other] == hash,
                        Self.equal(bytes, offsets, other, UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[Int(offsets[entry]) ..< Int(offsets[entry + 1])])))
                    {
                        duplicate = true
                        break
                    }
                    slot = (slot + 1) & mask
                }
                if duplicate {
                    duplicates.append(entry)
                } else {
                    slots[slot] = Int32(entry + 1)
                }
            }
        }
        self.arena = arena
        self.offsets = offsets
        self.hashes = hashes
        self.slots = slots
        self.mask = mask
    }

    /// The index of the id spelled by `bytes` (UTF-8), or nil.
    @inlinable
    public func index(of bytes: UnsafeRawBufferPointer) -> Int32? {
        let found = lookup(bytes)
        return found >= 0 ? found : nil
    }

    /// The index of `id`, or nil.
    @inlinable
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
        var slot = Int(truncatingIfNeeded: hash) & mask
        return arena.withUnsafeBufferPointer { arenaBytes in
            while true {
                let stored = slots[slot]
                if stored == 0 { return -1 }
                let entry = Int(stored - 1)
                if hashes[entry] == hash, Self.equal(arenaBytes, offsets, entry, bytes) {
                    return Int32(entry)
                }
                slot = (slot + 1) & mask
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
        arena.capacity + offsets.capacity * 4 + hashes.capacity * 8 + slots.capacity * 4
    }

    @inline(__always)
    private static func equal(
        _ arena: UnsafeBufferPointer<UInt8>, _ offsets: [Int32], _ entry: Int, _ bytes: UnsafeRawBufferPointer
    ) -> Bool {
        let start = Int(offsets[entry])
        let length = Int(offsets[entry + 1]) - start
        guard length == bytes.count else { return false }
        guard length > 0, let base = arena.baseAddress, let other = bytes.baseAddress else { return true }
        return memcmpBytes(base + start, other.assumingMemoryBound(to: UInt8.self), length)
    }

    @inline(__always)
    private static func memcmpBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        var i = 0
        while i + 8 <= count {
            if UnsafeRawPointer(a + i).loadUnaligned(as: UInt64.self) != UnsafeRawPointer(b + i).loadUnaligned(as: UInt64.self) {
                return false
            }
            i += 8
        }
        while i < count {
            if a[i] != b[i] { return false }
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

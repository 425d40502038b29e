// Fixed-size, immutable-after-build tables for the snapshot's hot data.
//
// Decisions on a large workspace are bound by memory latency: each one touches a few random
// cache lines spread over ~25 MB of tables. With 4 KiB pages that range is far beyond the
// TLB's reach, and under virtualisation every TLB miss is a two-dimensional page walk that
// can cost as much as the DRAM access itself. Large tables therefore live in their own
// anonymous mapping, aligned to 2 MiB and advised `MADV_HUGEPAGE` *before* the first touch,
// so (with transparent huge pages in `madvise` or `always` mode) the kernel backs them with
// 2 MiB pages: the whole snapshot needs a dozen TLB entries. Small tables use the ordinary
// allocator. Reads go straight to the storage: no ARC traffic on array buffers, one bounds
// compare per read.
//
// This is the only file of the engine that talks to the OS (memory mapping only; no I/O).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// An immutable array of trivial (plain-data) values in huge-page-friendly memory.
///
/// `@unchecked Sendable`: the storage is written only inside `init` (before the table is
/// published) and never mutated afterwards; `Element` is plain data (no references), so
/// concurrent reads from any thread are safe.
@usableFromInline
final class FlatTable<Element>: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutablePointer<Element>
    @usableFromInline let count: Int
    /// The bytes reserved (a multiple of 2 MiB when mapped).
    let reservedBytes: Int
    /// Whether `base` comes from `mmap` (else from the allocator).
    private let mapped: Bool

    static var hugePageSize: Int { 2 << 20 }
    /// Tables at least this large get their own huge-page-advised mapping.
    static var mappingThreshold: Int { 256 << 10 }

    /// A table of `count` elements, each initialised by `fill` (which must initialise all of
    /// them; elements are plain data, so an uninitialised element is just garbage bytes).
    init(count: Int, fill: (UnsafeMutableBufferPointer<Element>) -> Void) {
        precondition(_isPOD(Element.self), "FlatTable holds plain data only")
        let count = max(0, count)
        let bytes = max(1, count * MemoryLayout<Element>.stride)
        var base: UnsafeMutableRawPointer? = nil
        var reserved = bytes
        var mapped = false
        #if canImport(Glibc)
        if bytes >= Self.mappingThreshold, let reused = MappingPool.take((bytes + Self.hugePageSize - 1) / Self.hugePageSize * Self.hugePageSize) {
            base = reused
            reserved = (bytes + Self.hugePageSize - 1) / Self.hugePageSize * Self.hugePageSize
            mapped = true
        } else if bytes >= Self.mappingThreshold {
            let huge = Self.hugePageSize
            let size = (bytes + huge - 1) / huge * huge
            // Over-map by one huge page so a 2 MiB-aligned range of `size` bytes fits, then
            // return the unaligned head and tail.
            let raw = mmap(nil, size + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            if let raw, raw != UnsafeMutableRawPointer(bitPattern: -1) {
                let address = UInt(bitPattern: raw)
                let aligned = (address + UInt(huge - 1)) & ~UInt(huge - 1)
                let head = Int(aligned - address)
                if head > 0 { munmap(raw, head) }
                let tail = huge - head
                if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + UInt(size))!, tail) }
                let start = UnsafeMutableRawPointer(bitPattern: aligned)!
                _ = madvise(start, size, Int32(MADV_HUGEPAGE))
                base = start
                reserved = size
                mapped = true
            }
        }
        #endif
        if base == nil {
            base = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: max(64, MemoryLayout<Element>.alignment))
        }
        let typed = base!.bindMemory(to: Element.self, capacity: count)
        fill(UnsafeMutableBufferPointer(start: typed, count: count))
        self.base = typed
        self.count = count
        self.reservedBytes = reserved
        self.mapped = mapped
    }

    /// A copy of `array`.
    convenience init(_ array: [Element]) {
        self.init(count: array.count) { buffer in
            _ = buffer.initialize(from: array)
        }
    }

    /// `count` copies of `value`.
    convenience init(repeating value: Element, count: Int) {
        self.init(count: count) { buffer in buffer.initialize(repeating: value) }
    }

    deinit {
        #if canImport(Glibc)
        if mapped {
            if !MappingPool.give(UnsafeMutableRawPointer(base), reservedBytes) {
                munmap(UnsafeMutableRawPointer(base), reservedBytes)
            }
            return
        }
        #endif
        UnsafeMutableRawPointer(base).deallocate()
    }

    /// Bounds-checked read (one compare, like an array; it keeps a key from another
    /// snapshot from reading out of bounds).
    @inlinable @inline(__always)
    subscript(index: Int) -> Element {
        precondition(UInt(bitPattern: index) < UInt(bitPattern: count), "FlatTable index out of range")
        return base[index]
    }

    /// A bounds-checked pointer to element `index` (valid while the table lives).
    @inlinable @inline(__always)
    func pointer(_ index: Int) -> UnsafePointer<Element> {
        precondition(UInt(bitPattern: index) < UInt(bitPattern: count), "FlatTable index out of range")
        return UnsafePointer(base + index)
    }

    /// Approximate bytes held.
    var footprint: Int { reservedBytes }

    /// The elements as a read-only buffer.
    @inline(__always)
    var buffer: UnsafeBufferPointer<Element> { UnsafeBufferPointer(start: base, count: count) }
}

/// Mappings of freed tables, kept (up to `limit` bytes) for the next tables of the same size.
/// A delta reload (SnapshotDelta.swift) rebuilds the same few tables each time and frees the
/// previous copies first: reusing their mappings, already backed by (huge) pages, spares the
/// kernel faulting in and zeroing fresh ones, which was the largest part of a delta's CPU
/// time. A reused mapping holds stale bytes; every table initialises all of its elements.
enum MappingPool {
    /// Bytes kept at most.
    static let limit = 32 << 20

    /// Free mappings: (address, reserved bytes).
    private static let free = Mutex<[(address: UInt, bytes: Int)]>([])

    /// A kept mapping of exactly `bytes` (a multiple of the huge page size), or nil.
    static func take(_ bytes: Int) -> UnsafeMutableRawPointer? {
        let address = free.withLock { free -> UInt? in
            guard let index = free.lastIndex(where: { $0.bytes == bytes }) else { return nil }
            return free.remove(at: index).address
        }
        return address.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
    }

    /// Keeps a mapping for reuse; false (the caller unmaps it) when the pool is full.
    static func give(_ base: UnsafeMutableRawPointer, _ bytes: Int) -> Bool {
        free.withLock { free in
            guard free.reduce(0, { $0 + $1.bytes }) + bytes <= limit else { return false }
            free.append((UInt(bitPattern: base), bytes))
            return true
        }
    }
}

// The byte buffers of a connection: malloc'd, growable, with a read offset, shrinking back to
// their base size once a large frame or answer has passed.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A growable byte buffer with a read offset: [base, base+offset) consumed, then `count`
/// bytes, then free space. Owned by one connection; `release()` frees it.
struct RawBytes {
    private(set) var base: UnsafeMutableRawPointer?
    private(set) var capacity: Int
    private var offset = 0
    var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = capacity > 0 ? malloc(capacity) : nil
        precondition(capacity == 0 || base != nil, "out of memory")
    }

    var start: UnsafeMutableRawPointer { base! + offset }
    var end: UnsafeMutableRawPointer { base! + offset + count }
    var available: Int { capacity - offset - count }

    /// The unconsumed bytes.
    var bytes: UnsafeRawBufferPointer {
        base == nil ? UnsafeRawBufferPointer(start: nil, count: 0) : UnsafeRawBufferPointer(start: start, count: count)
    }

    mutating func consume(_ bytes: Int) {
        offset += bytes
        count -= bytes
        if count == 0 { offset = 0 }
    }

    /// Moves the unread bytes to the front.
    mutating func compact() {
        guard offset > 0, let base else { return }
        if count > 0 { memmove(base, base + offset, count) }
        offset = 0
    }

    /// Makes room for `total` unread bytes in all.
    mutating func reserve(_ total: Int) {
        if offset + total <= capacity { return }
        compact()
        if total <= capacity { return }
        var newCapacity = max(capacity, 1024)
        while newCapacity < total { newCapacity *= 2 }
        base = realloc(base, newCapacity)
        precondition(base != nil, "out of memory")
        capacity = newCapacity
    }

    /// Appends `bytes`.
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(count + bytes.count)
        memcpy(end, bytes.baseAddress!, bytes.count)
        count += bytes.count
    }

    /// Returns to `size` bytes of capacity when empty and grown past `size` (a large frame or
    /// answer passed): one connection's burst does not pin its peak memory.
    mutating func shrinkIfEmpty(to size: Int) {
        guard count == 0, capacity > size else { return }
        offset = 0
        if size == 0 {
            free(base)
            base = nil
        } else {
            base = realloc(base, size)
            precondition(base != nil, "out of memory")
        }
        capacity = size
    }

    mutating func release() {
        free(base)
        base = nil
        capacity = 0
        count = 0
        offset = 0
    }
}

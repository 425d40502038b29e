// The request path's metrics: one shard per loop (an epoll loop, or a SwiftNIO event
// loop), written only by that loop's thread, read by the scrape.
//
// A shard is a block of plain 64-bit counters of its own (aligned and padded to 128 bytes,
// so no two shards share a cache line): requests by method and status code, the request
// duration histogram's buckets and sum, the batch size histogram's. Its loop adds to them
// with a relaxed load and a relaxed store (`authz_counter_add`: no lock, no locked
// instruction, no fence, no line shared with another thread); the scrape reads them with
// relaxed loads, sums the shards and publishes the totals (ServerMetrics).

import AuthzWire
import CEpoll

#if canImport(Glibc)
import Glibc
#endif

/// The `method` label: the request's field in the proto's `oneof method`, or `invalid` for
/// a payload that did not decode (or a frame that broke the stream).
enum RequestMethod: Int, CaseIterable {
    case canUse, effectivePermission, seatType, capabilities, batch, status, reload
    case listProjects, listProjectAccess, listAssets, invalid

    init(_ method: WireRequest.Method) {
        switch method {
        case .check(.canUse): self = .canUse
        case .check(.effectivePermission): self = .effectivePermission
        case .check(.seatType): self = .seatType
        case .check(.capabilities): self = .capabilities
        case .batch: self = .batch
        case .status: self = .status
        case .reload: self = .reload
        case .lookup(.projects): self = .listProjects
        case .lookup(.projectAccess): self = .listProjectAccess
        case .lookup(.assets): self = .listAssets
        }
    }

    var label: String {
        switch self {
        case .canUse: "can_use"
        case .effectivePermission: "effective_permission"
        case .seatType: "seat_type"
        case .capabilities: "capabilities"
        case .batch: "batch"
        case .status: "status"
        case .reload: "reload"
        case .listProjects: "list_projects"
        case .listProjectAccess: "list_project_access"
        case .listAssets: "list_assets"
        case .invalid: "invalid"
        }
    }
}

/// Where each counter sits in a shard, and the histograms' bucket bounds.
enum StatsLayout {
    /// `RequestMethod.allCases.count` and `RPCCode.allCases.count`, as literals: the request
    /// path computes slot indexes from them without a lazy global's once-check
    /// (`RequestStats.init` checks they match).
    static let methods = 11
    static let codes = 17

    /// Upper bounds of the request duration buckets, in nanoseconds (1 µs … 1 s).
    static let durationBoundsNs: [UInt64] = [
        1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000, 100_000_000, 250_000_000,
        500_000_000, 1_000_000_000,
    ]
    /// Upper bounds of the batch size buckets, in checks.
    static let batchBounds: [UInt64] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]

    static let requests = 0
    /// One count per bucket (not cumulative), the last one for values above every bound.
    static let durationBuckets = requests + methods * codes
    static let durationSumNs = durationBuckets + durationBoundsNs.count + 1
    static let batchBuckets = durationSumNs + 1
    static let batchSum = batchBuckets + batchBounds.count + 1
    static let slots = batchSum + 1

    static func request(_ method: RequestMethod, _ code: RPCCode) -> Int {
        requests + method.rawValue * codes + Int(code.rawValue)
    }

    /// The bucket of `value` among `bounds` (bounds.count for values above them all).
    @inline(__always)
    static func bucket(_ value: UInt64, _ bounds: [UInt64]) -> Int {
        var index = 0
        while index < bounds.count, value > bounds[index] { index += 1 }
        return index
    }
}

/// One loop's counters. Written by that loop's thread only.
final class RequestStats: @unchecked Sendable {
    private let slots: UnsafeMutablePointer<UInt64>

    static let alignment = 128

    init() {
        precondition(
            StatsLayout.methods == RequestMethod.allCases.count && StatsLayout.codes == RPCCode.allCases.count,
            "StatsLayout's method and code counts are out of date")
        let bytes = (StatsLayout.slots * 8 + Self.alignment - 1) / Self.alignment * Self.alignment
        var raw: UnsafeMutableRawPointer?
        precondition(posix_memalign(&raw, Self.alignment, bytes) == 0 && raw != nil, "posix_memalign failed")
        memset(raw!, 0, bytes)
        slots = raw!.bindMemory(to: UInt64.self, capacity: bytes / 8)
    }

    deinit {
        free(slots)
    }

    // MARK: Writing (the owning loop's thread)

    @inline(__always)
    func add(_ slot: Int, _ amount: UInt64 = 1) {
        authz_counter_add(slots + slot, amount)
    }

    /// `count` requests of `method` answered with `code`.
    @inline(__always)
    func answered(_ method: RequestMethod, _ code: RPCCode, count: UInt64 = 1) {
        add(method.rawValue &* 17 &+ Int(code.rawValue), count)  // StatsLayout.request(method, code)
    }

    /// `count` requests took `nanoseconds` each from read to answer.
    func observeDuration(nanoseconds: UInt64, count: UInt64) {
        add(StatsLayout.durationBuckets + StatsLayout.bucket(nanoseconds, StatsLayout.durationBoundsNs), count)
        add(StatsLayout.durationSumNs, nanoseconds &* count)
    }

    /// A Batch request of `checks` checks.
    func observeBatch(checks: Int) {
        let size = UInt64(max(0, checks))
        add(StatsLayout.batchBuckets + StatsLayout.bucket(size, StatsLayout.batchBounds))
        add(StatsLayout.batchSum, size)
    }

    // MARK: Reading (any thread)

    func load(_ slot: Int) -> UInt64 {
        authz_counter_load(slots + slot)
    }

    /// Adds every counter of this shard into `totals` (StatsLayout.slots long).
    func accumulate(into totals: inout [UInt64]) {
        for slot in 0..<StatsLayout.slots { totals[slot] &+= load(slot) }
    }
}

// The lookups benchmark (issue 10), on a loaded workspace database:
//
//   lookups-bench engine --db PATH [--runs R]
//       in process: a 1,000-item ListProjects page for an admin (who opens every project),
//       for the non-admin who opens the most among a sample, and for a typical user (the
//       median of the sample), per page, per item and for the whole listing; the same
//       listing the naive way (one effectivePermission per project, in process); and
//       ListProjectAccess for a project shared with the whole workspace. Allocations per
//       page with the malloc counter. Also the snapshot load (wall) and build times. The
//       in-process times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so waiting
//       for a core on a shared machine does not count.
//   lookups-bench socket --db PATH --socket PATH --server-pid PID [--runs R --duration S --depth D]
//       the same over a running authzd: page round trips (one page in flight) and the
//       server's CPU time per page (utime+stime from /proc/PID/stat over many pages), and
//       the naive way: one EffectivePermission per project, pipelined (D in flight), its wall
//       time and server CPU per listing, with the ratios.
//   lookups-bench encode-loop --db PATH [--count N]
//       encodes one 1,000-item page N times, for `perf record`.
//
// Prints a human summary to stderr and one JSON object to stdout. Medians everywhere.

import AuthzEngine
import AuthzStore
import AuthzWire
import AuthzWorkloads
import CAllocCounter
import Foundation

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Helpers

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// This thread's CPU time (ns): the in-process timings use it, so that time spent waiting
/// for a core on a shared machine is not counted as work.
func cpuNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func log(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

func fail(_ message: String) -> Never {
    log("lookups-bench: \(message)")
    exit(2)
}

func rounded(_ value: Double, _ digits: Int = 2) -> Double {
    let scale = pow(10.0, Double(digits))
    return (value * scale).rounded() / scale
}

struct Options {
    var command = ""
    var values: [String: String] = [:]

    init(_ arguments: [String]) {
        var rest = arguments.dropFirst()
        if let first = rest.first, !first.hasPrefix("--") {
            command = first
            rest = rest.dropFirst()
        }
        while let key = rest.first, key.hasPrefix("--") {
            rest = rest.dropFirst()
            values[String(key.dropFirst(2))] = rest.first ?? ""
            rest = rest.dropFirst()
        }
    }

    func int(_ key: String, _ fallback: Int) -> Int { values[key].flatMap { Int($0) } ?? fallback }
    func double(_ key: String, _ fallback: Double) -> Double { values[key].flatMap { Double($0) } ?? fallback }
    func string(_ key: String) -> String? { values[key] }
}

/// Every page of a listing (1,000 items each), from the engine.
func engineListing(_ page: (String) throws -> (count: Int, next: String)) rethrows -> Int {
    var token = ""
    var total = 0
    repeat {
        let result = try page(token)
        total += result.count
        token = result.next
    } while !token.isEmpty
    return total
}

func projectCount(_ snapshot: Snapshot, _ user: String) -> Int {
    try! engineListing { token in
        let page = try snapshot.listProjects(user: user, pageSize: 1_000, pageToken: token)
        return (page.entries.count, page.nextPageToken)
    }
}

// MARK: - Subjects

/// Who and what is measured: chosen from the snapshot, deterministically.
struct Subjects {
    var admin: String
    var adminCount: Int
    var top: String
    var topCount: Int
    var typical: String
    var typicalCount: Int
    var sample: Int
    var sharedProject: String
    var sharedCount: Int

    init(_ snapshot: Snapshot) {
        let started = now()
        let active = snapshot.userIds.ids.filter { snapshot.role(snapshot.userKey($0)) != nil }
        guard let admin = active.first(where: { snapshot.role(snapshot.userKey($0)) == .admin }) else {
            fail("the workspace has no active admin")
        }
        self.admin = admin
        adminCount = projectCount(snapshot, admin)
        // A seeded sample of the other active users; the median is the typical user.
        var rng = SplitMix64(seed: 10)
        let others = active.filter { snapshot.role(snapshot.userKey($0)) != .admin }
        var chosen = Set<String>()
        let sampleSize = min(2_000, others.count)
        while chosen.count < sampleSize { chosen.insert(others[rng.below(others.count)]) }
        var counted: [(String, Int)] = chosen.sorted().map { user in (user, projectCount(snapshot, user)) }
        counted.sort { a, b in a.1 != b.1 ? a.1 < b.1 : a.0 < b.0 }
        sample = counted.count
        (top, topCount) = counted[counted.count - 1]
        (typical, typicalCount) = counted[counted.count / 2]
        // The first project (by id) shared with the whole workspace and not public: open to
        // more than half the users, and not to the anonymous viewer.
        func accessCount(_ project: String) -> Int {
            try! engineListing { token in
                let page = try snapshot.listProjectAccess(project: project, pageSize: 1_000, pageToken: token)
                return (page.entries.count, page.nextPageToken)
            }
        }
        var found: (String, Int)?
        for project in snapshot.projectIds.ids where snapshot.effectivePermission(user: "", project: project).level == .none {
            let count = accessCount(project)
            if count > snapshot.userCount / 2 {
                found = (project, count)
                break
            }
        }
        guard let found else { fail("no project shared with the whole workspace") }
        (sharedProject, sharedCount) = found
        log(
            "subjects: admin \(admin) opens \(adminCount) projects; of \(sample) sampled users the most is \(top) with \(topCount), the median \(typical) with \(typicalCount); \(sharedProject) is open to \(sharedCount) users (chosen in \(Double(now() - started) / 1e9) s)"
        )
    }

    var json: [String: Any] {
        [
            "admin": ["user": admin, "projects": adminCount],
            "top_sampled": ["user": top, "projects": topCount, "sample": sample],
            "typical": ["user": typical, "projects": typicalCount, "sample": sample],
            "shared_project": ["project": sharedProject, "users": sharedCount],
        ]
    }
}

// MARK: - Engine

/// A listing's pages timed in process: per full page (µs), per item (ns) and per listing (ms).
func timeEngineListing(runs: Int, _ page: (String) throws -> (count: Int, next: String)) rethrows -> [String: Any] {
    var pageMicros: [Double] = []
    var listingMillis: [Double] = []
    var items = 0
    for _ in 0 ..< runs {
        var token = ""
        var total = 0
        let listingStart = cpuNow()
        repeat {
            let start = cpuNow()
            let result = try page(token)
            let elapsed = Double(cpuNow() - start) / 1_000
            if result.count == 1_000 { pageMicros.append(elapsed) }
            total += result.count
            token = result.next
        } while !token.isEmpty
        listingMillis.append(Double(cpuNow() - listingStart) / 1e6)
        items = total
    }
    let perPage = median(pageMicros)
    return [
        "items": items, "full_pages_timed": pageMicros.count,
        "page_us_median": rounded(perPage), "page_us_p90": rounded(percentile(pageMicros, 0.9)),
        "item_ns": rounded(perPage * 1_000 / 1_000, 1), "listing_ms_median": rounded(listingMillis.isEmpty ? .nan : median(listingMillis), 3),
    ]
}

func engineCommand(_ options: Options) {
    guard let db = options.string("db") else { fail("--db is required") }
    let runs = options.int("runs", 5)
    var loadSeconds: [Double] = []
    var snapshot: Snapshot! = nil
    for _ in 0 ..< max(1, min(runs, 3)) {
        let start = cpuNow()
        snapshot = try! SnapshotLoader.load(path: db)
        loadSeconds.append(Double(cpuNow() - start) / 1e9)
    }
    let store = try! WorkspaceStore.open(path: db, create: false)
    let (workspace, version) = try! store.exportWorkspace()
    var buildSeconds: [Double] = []
    for _ in 0 ..< max(1, runs) {
        let start = cpuNow()
        let built = Snapshot(workspace: workspace, version: version)
        buildSeconds.append(Double(cpuNow() - start) / 1e9)
        precondition(built.projectCount == snapshot.projectCount)
    }
    log("snapshot: load (SQLite + build) \(rounded(median(loadSeconds), 3)) s, build from the workspace \(rounded(median(buildSeconds) * 1000, 1)) ms (medians)")
    let subjects = Subjects(snapshot)

    var results: [String: Any] = [
        "snapshot": [
            "load_s_median": rounded(median(loadSeconds), 3), "build_ms_median": rounded(median(buildSeconds) * 1_000, 1),
            "users": snapshot.userCount, "projects": snapshot.projectCount, "footprint_mb": rounded(Double(snapshot.footprint) / 1e6, 1),
        ],
        "subjects": subjects.json,
    ]
    for (name, user) in [("admin", subjects.admin), ("top_sampled", subjects.top), ("typical", subjects.typical)] {
        var entry = try! timeEngineListing(runs: runs) { token in
            let page = try snapshot.listProjects(user: user, pageSize: 1_000, pageToken: token)
            return (page.entries.count, page.nextPageToken)
        }
        // The naive way in process: one effectivePermission per project.
        let key = snapshot.userKey(user)
        var naive: [Double] = []
        var opened = 0
        for _ in 0 ..< runs {
            let start = cpuNow()
            var count = 0
            for p in snapshot.projectIds.ids.indices {
                if snapshot.effectivePermission(key, snapshot.projectKey(snapshot.projectIds.id(at: Int32(p)))).level > .none { count += 1 }
            }
            naive.append(Double(cpuNow() - start) / 1e6)
            opened = count
        }
        precondition(opened == entry["items"] as! Int, "the naive count disagrees")
        entry["naive_in_process_listing_ms"] = rounded(median(naive), 3)
        // Allocations of one 1,000-item page (the engine's share: entries, token).
        _ = try! snapshot.listProjects(user: user, pageSize: 1_000)
        let before = authz_thread_allocations()
        let page = try! snapshot.listProjects(user: user, pageSize: 1_000)
        entry["allocations_per_page"] = Int(authz_thread_allocations() - before)
        entry["page_items"] = page.entries.count
        // The server's share besides the engine: the response as the server builds it (the
        // engine's page, ids left in the arena), sized and encoded as a transport does.
        var encodeMicros: [Double] = []
        var frameBytes = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for _ in 0 ..< max(20, runs * 10) {
            let page = try! snapshot.listProjects(user: user, pageSize: 1_000)
            let start = cpuNow()
            let response = WireResponse(
                callId: 1, snapshotVersion: page.snapshotVersion,
                answer: .lookup(.projects(WireResponse.Listing(page: page, ids: snapshot.projectIds))))
            let size = response.encodedSize()
            frameBytes = buffer.withUnsafeMutableBytes { response.encode(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<size])) }
            encodeMicros.append(Double(cpuNow() - start) / 1_000)
        }
        entry["encode_us_per_page"] = rounded(median(encodeMicros))
        entry["frame_bytes_per_page"] = frameBytes
        results["list_projects_\(name)"] = entry
        log("engine ListProjects \(name) (\(user)): \(entry)")
    }
    var access = try! timeEngineListing(runs: runs) { token in
        let page = try snapshot.listProjectAccess(project: subjects.sharedProject, pageSize: 1_000, pageToken: token)
        return (page.entries.count, page.nextPageToken)
    }
    let before = authz_thread_allocations()
    _ = try! snapshot.listProjectAccess(project: subjects.sharedProject, pageSize: 1_000)
    access["allocations_per_page"] = Int(authz_thread_allocations() - before)
    results["list_project_access_shared"] = access
    log("engine ListProjectAccess \(subjects.sharedProject): \(access)")
    emit(results)
}

// MARK: - Socket

/// A blocking Unix-socket connection speaking the framed protocol.
final class Connection {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    private var chunk = [UInt8](repeating: 0, count: 1 << 20)

    init(path: String) {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { fail("socket path too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { fail("cannot connect to \(path): errno \(errno)") }
    }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                fail("write: errno \(errno)")
            }
            offset += written
        }
    }

    /// The next response frame's payload (blocking).
    func readPayload() -> [UInt8] {
        while true {
            let parser = FrameParser(maxPayloadLength: 64 << 20)
            let available = buffer.count - start
            if available >= FrameHeader.size {
                let parsed = buffer.withUnsafeBytes { parser.parse(UnsafeRawBufferPointer(rebasing: $0[start...])) }
                if case .frame(let frame) = parsed {
                    let payload = Array(buffer[(start + frame.payload.lowerBound) ..< (start + frame.payload.upperBound)])
                    start += frame.length
                    if start == buffer.count {
                        buffer.removeAll(keepingCapacity: true)
                        start = 0
                    }
                    return payload
                }
            }
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { fail("the server closed the connection") }
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            buffer.append(contentsOf: chunk[0 ..< count])
        }
    }

    func response() -> WireResponse {
        let payload = readPayload()
        do {
            return try payload.withUnsafeBytes { try WireResponse(decoding: $0) }
        } catch {
            fail("bad response: \(error)")
        }
    }
}

/// utime + stime of a process, in seconds (10 ms ticks).
func processCPU(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { fail("cannot read /proc/\(pid)/stat") }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
    return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Pages of a listing over the socket, one in flight, repeated for `duration` seconds (and
/// at least `runs` times): per-page round trips, server CPU per page and per listing.
func timeSocketListing(
    _ connection: Connection, pid: Int32, runs: Int, duration: Double, _ request: (String) -> WireRequest.Lookup
) -> [String: Any] {
    var roundTrips: [Double] = []
    var listingMillis: [Double] = []
    var pages = 0
    var listings = 0
    var items = 0
    let cpuBefore = processCPU(pid)
    let started = now()
    var callId: UInt64 = 1
    while listings < runs || Double(now() - started) / 1e9 < duration {
        var token = ""
        var total = 0
        let listingStart = now()
        repeat {
            var bytes: [UInt8] = []
            WireRequest(callId: callId, method: .lookup(request(token))).append(to: &bytes)
            callId += 1
            let start = now()
            connection.send(bytes)
            let payload = connection.readPayload()
            let elapsed = Double(now() - start) / 1_000
            let response = payload.withUnsafeBytes { try! WireResponse(decoding: $0) }
            guard response.status.code == .ok, case .lookup(let result) = response.answer else { fail("\(response.status)") }
            let (count, next): (Int, String) =
                switch result {
                case .projects(let listing), .projectAccess(let listing): (listing.items.count, listing.nextPageToken)
                case .assets(let listing): (listing.items.count, listing.nextPageToken)
                }
            if count == 1_000 { roundTrips.append(elapsed) }
            pages += 1
            total += count
            token = next
        } while !token.isEmpty
        listingMillis.append(Double(now() - listingStart) / 1e6)
        listings += 1
        items = total
    }
    let cpu = processCPU(pid) - cpuBefore
    let cpuPerPage = cpu / Double(pages) * 1e6
    return [
        "items": items, "pages_per_listing": pages / listings, "listings": listings, "pages": pages,
        "round_trip_us_median": rounded(median(roundTrips)), "round_trip_us_p90": rounded(percentile(roundTrips, 0.9)),
        "server_cpu_us_per_page": rounded(cpuPerPage), "server_cpu_ns_per_item": rounded(cpu / Double(items * listings) * 1e9, 1),
        "server_cpu_ms_per_listing": rounded(cpu / Double(listings) * 1e3, 3),
        "listing_ms_median": rounded(median(listingMillis), 3),
    ]
}

/// The naive way: one EffectivePermission per id, pipelined (`depth` in flight), repeated
/// `runs` times: wall time and server CPU per listing, and how many answers were not none.
func timeNaive(
    _ connection: Connection, pid: Int32, runs: Int, depth: Int, count: Int, _ check: (Int) -> WireRequest.Check
) -> [String: Any] {
    var wallMillis: [Double] = []
    var opened = 0
    let cpuBefore = processCPU(pid)
    for _ in 0 ..< runs {
        let start = now()
        var sent = 0
        var received = 0
        var allowed = 0
        while received < count {
            var bytes: [UInt8] = []
            while sent < count, sent - received < depth {
                WireRequest(callId: UInt64(sent + 1), method: .check(check(sent))).append(to: &bytes)
                sent += 1
            }
            if !bytes.isEmpty { connection.send(bytes) }
            // Read half the window before refilling it.
            let target = min(count, received + max(1, (sent - received) / 2))
            while received < target {
                let response = connection.response()
                guard response.status.code == .ok, case .check(.effectivePermission(let result)) = response.answer else {
                    fail("\(response.status)")
                }
                if result.level > .none { allowed += 1 }
                received += 1
            }
        }
        wallMillis.append(Double(now() - start) / 1e6)
        opened = allowed
    }
    let cpu = processCPU(pid) - cpuBefore
    return [
        "calls_per_listing": count, "opened": opened, "depth": depth, "runs": runs,
        "wall_ms_median": rounded(median(wallMillis), 1),
        "server_cpu_ms_per_listing": rounded(cpu / Double(runs) * 1e3, 1),
        "server_cpu_us_per_call": rounded(cpu / Double(runs * count) * 1e6, 3),
    ]
}

func socketCommand(_ options: Options) {
    guard let db = options.string("db"), let socketPath = options.string("socket"),
        let pid = options.string("server-pid").flatMap({ Int32($0) })
    else { fail("--db, --socket and --server-pid are required") }
    let runs = options.int("runs", 5)
    let duration = options.double("duration", 3)
    let depth = options.int("depth", 128)
    let snapshot = try! SnapshotLoader.load(path: db)
    let subjects = Subjects(snapshot)
    let projects = snapshot.projectIds.ids
    let connection = Connection(path: socketPath)
    var results: [String: Any] = ["subjects": subjects.json, "runs": runs, "duration_s": duration]
    // Warm up the server (its first pages touch cold tables).
    _ = timeSocketListing(connection, pid: pid, runs: 1, duration: 0) {
        .projects(.init(user: subjects.admin, pageSize: 1_000, pageToken: $0))
    }
    for (name, user) in [("admin", subjects.admin), ("top_sampled", subjects.top), ("typical", subjects.typical)] {
        var entry = timeSocketListing(connection, pid: pid, runs: runs, duration: duration) {
            .projects(.init(user: user, pageSize: 1_000, pageToken: $0))
        }
        let naive = timeNaive(connection, pid: pid, runs: runs, depth: depth, count: projects.count) { index in
            .effectivePermission(.init(user: user, project: projects[index]))
        }
        precondition(naive["opened"] as! Int == entry["items"] as! Int, "the naive count disagrees with the listing")
        entry["naive"] = naive
        let lookupCPU = entry["server_cpu_ms_per_listing"] as! Double
        let naiveCPU = naive["server_cpu_ms_per_listing"] as! Double
        entry["naive_over_lookup_server_cpu"] = rounded(naiveCPU / lookupCPU, 1)
        entry["naive_over_lookup_wall"] = rounded((naive["wall_ms_median"] as! Double) / (entry["listing_ms_median"] as! Double), 1)
        // The naive way to one page of 1,000 open projects: ask in id order until 1,000 answer
        // above none, i.e. projects / opened x 1,000 calls.
        let callsPerPage = Double(projects.count) / Double(max(1, entry["items"] as! Int)) * 1_000
        entry["naive_server_cpu_us_per_1000_items"] = rounded((naive["server_cpu_us_per_call"] as! Double) * callsPerPage)
        results["list_projects_\(name)"] = entry
        log("socket ListProjects \(name) (\(user)): \(entry)")
    }
    let users = snapshot.userIds.ids
    var access = timeSocketListing(connection, pid: pid, runs: runs, duration: duration) {
        .projectAccess(.init(project: subjects.sharedProject, pageSize: 1_000, pageToken: $0))
    }
    let naive = timeNaive(connection, pid: pid, runs: max(1, runs / 2), depth: depth, count: users.count) { index in
        .effectivePermission(.init(user: users[index], project: subjects.sharedProject))
    }
    access["naive"] = naive
    access["naive_over_lookup_server_cpu"] = rounded((naive["server_cpu_ms_per_listing"] as! Double) / (access["server_cpu_ms_per_listing"] as! Double), 1)
    results["list_project_access_shared"] = access
    log("socket ListProjectAccess \(subjects.sharedProject): \(access)")
    emit(results)
}

func emit(_ results: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: results, options: [.sortedKeys, .prettyPrinted])
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

/// Encodes one 1,000-item page in a loop (for `perf record`).
func encodeLoop(_ options: Options) {
    guard let db = options.string("db") else { fail("--db is required") }
    let snapshot = try! SnapshotLoader.load(path: db)
    let user = snapshot.userIds.ids.first { snapshot.role(snapshot.userKey($0)) == .admin }!
    let page = try! snapshot.listProjects(user: user, pageSize: 1_000)
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    let count = options.int("count", 20_000)
    let start = cpuNow()
    for _ in 0 ..< count {
        let response = WireResponse(
            callId: 1, snapshotVersion: page.snapshotVersion,
            answer: .lookup(.projects(WireResponse.Listing(page: page, ids: snapshot.projectIds))))
        let size = response.encodedSize()
        _ = buffer.withUnsafeMutableBytes { response.encode(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<size])) }
    }
    log("encode: \(Double(cpuNow() - start) / Double(count) / 1_000) us per page")
}

let options = Options(CommandLine.arguments)
switch options.command {
case "engine": engineCommand(options)
case "socket": socketCommand(options)
case "encode-loop": encodeLoop(options)
default: fail("usage: lookups-bench engine --db PATH [--runs R] | socket --db PATH --socket PATH --server-pid PID [--runs R --duration S --depth D]")
}

// Engine and store benchmark: generate → document → SQLite import → snapshot load →
// decisions. Every timed phase runs several times; medians are reported.
//
//   engine-bench full --dir DIR [--users N --groups N --projects N --grants-per-project N
//                                --seed S --runs R --import-runs R --decisions N]
//   engine-bench decide --db PATH [--runs R --decisions N --after-deltas N]   (decisions only)
//   engine-bench rss --db PATH      (resident memory of one loaded snapshot, own process)
//
// Prints a human summary to stderr and one JSON object to stdout.

import AuthzDocument
import AuthzEngine
import AuthzStore
import AuthzWorkloads
import CAllocCounter
import Foundation

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func residentKiB() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
    }
    return 0
}

func log(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

struct Options {
    var command = "full"
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
    func string(_ key: String) -> String? { values[key] }
}


/// Times every decision kind over `count` queries with skewed ids (a few hot users and
/// projects, like real traffic), by pre-resolved keys and by string ids.
func measureDecisions(snapshot: Snapshot, runs: Int, count decisionCount: Int, into results: inout [String: Double]) {
    var rng = SplitMix64(seed: 99)
    var users: [String] = []
    var projects: [String] = []
    var assets: [String] = []
    for _ in 0 ..< decisionCount {
        users.append(snapshot.userIds.id(at: Int32(rng.skewed(snapshot.userCount))))
        projects.append(snapshot.projectIds.id(at: Int32(rng.skewed(snapshot.projectCount))))
        assets.append(snapshot.assetIds.id(at: Int32(rng.skewed(snapshot.assetCount))))
    }
    let userKeys = users.map { snapshot.userKey($0) }
    let projectKeys = projects.map { snapshot.projectKey($0) }
    let assetKeys = assets.map { snapshot.assetKey($0) }

    func measure(_ name: String, _ body: (Int) -> Int) {
        var times: [Double] = []
        var allocations: UInt64 = 0
        for _ in 0 ..< runs {
            let before = authz_thread_allocations()
            let start = now()
            var checksum = 0
            for i in 0 ..< decisionCount { checksum &+= body(i) }
            times.append(Double(now() - start) / Double(decisionCount))
            allocations += authz_thread_allocations() - before
            consume(checksum)
        }
        results["\(name)_ns"] = median(times)
        results["\(name)_allocations_per_op"] = Double(allocations) / Double(runs * decisionCount)
        log(String(format: "%-28@ %7.1f ns/op (median of %d × %d), %.3f allocations/op", name as NSString, median(times), runs, decisionCount, Double(allocations) / Double(runs * decisionCount)))
    }

    measure("user_id_lookup") { Int(snapshot.userKey(users[$0]).raw) }
    measure("project_id_lookup") { Int(snapshot.projectKey(projects[$0]).raw) }
    measure("effective_permission_keys") { Int(snapshot.effectivePermission(userKeys[$0], projectKeys[$0]).level.rawValue) }
    measure("can_use_keys") { Int(snapshot.canUse(userKeys[$0], assetKeys[$0]).access.rawValue) }
    measure("can_use_project_keys") { Int(snapshot.canUse(userKeys[$0], assetKeys[$0], project: projectKeys[$0]).access.rawValue) }
    measure("effective_permission_ids") { Int(snapshot.effectivePermission(user: users[$0], project: projects[$0]).level.rawValue) }
    measure("can_use_ids") { Int(snapshot.canUse(user: users[$0], asset: assets[$0]).access.rawValue) }
    measure("seat_type_ids") { Int(snapshot.seatType(user: users[$0]).seat.rawValue) }
}

let options = Options(CommandLine.arguments)

/// Keeps results observable so the optimiser cannot drop the measured work.
@inline(never) func consume(_ value: Int) {
    if value == 0x7fff_ffff_ffff { print("") }
}

switch options.command {
case "rss":
    guard let path = options.string("db") else { log("rss needs --db"); exit(2) }
    let before = residentKiB()
    let snapshot = try SnapshotLoader.load(path: path)
    let after = residentKiB()
    consume(snapshot.userCount)
    print("{\"rss_before_kib\":\(before),\"rss_after_kib\":\(after),\"snapshot_rss_kib\":\(after - before),\"snapshot_footprint_bytes\":\(snapshot.footprint)}")

case "decide":
    guard let path = options.string("db") else { log("decide needs --db"); exit(2) }
    var snapshot = try SnapshotLoader.load(path: path)
    // --after-deltas N: decide on the snapshot N delta reloads later (each adds a grant to
    // one project: Snapshot.applying), to compare with the fully built one.
    let deltas = options.int("after-deltas", 0)
    if deltas > 0 {
        let (workspace, _) = try SnapshotLoader.readWorkspace(path: path)
        for i in 0 ..< deltas {
            var project = workspace.projects[(i * 997) % workspace.projects.count]
            project.grants.append(.user(workspace.users[(i * 7919) % workspace.users.count].id, .canEdit))
            snapshot = try snapshot.applying(SnapshotDelta(projects: [project]), version: snapshot.version + 1)
        }
        log("decisions after \(deltas) delta reloads")
    }
    var results: [String: Double] = [:]
    let runs = max(1, options.int("runs", 5))
    measureDecisions(snapshot: snapshot, runs: runs, count: options.int("decisions", 1_000_000), into: &results)
    print("{" + results.keys.sorted().map { "\"\($0)\":\(String(format: "%.3f", results[$0] ?? 0))" }.joined(separator: ",") + "}")

case "load":
    // Snapshot load time only (SQLite read + build), median of --runs.
    guard let path = options.string("db") else { log("load needs --db"); exit(2) }
    var loadTimes: [Double] = []
    for _ in 0 ..< max(1, options.int("runs", 3)) {
        let start = now()
        let snapshot = try SnapshotLoader.load(path: path)
        loadTimes.append(Double(now() - start) / 1e6)
        consume(snapshot.userCount)
    }
    print("{\"load_ms\":\(String(format: "%.1f", median(loadTimes)))}")

case "verify":
    // A digest of full decisions (level, reason, every trace step; CanUse with and without a
    // project) over uniform random queries, to compare two engine builds on one database.
    guard let path = options.string("db") else { log("verify needs --db"); exit(2) }
    let snapshot = try SnapshotLoader.load(path: path)
    var rng = SplitMix64(seed: 7)
    var digest: UInt64 = 0xcbf2_9ce4_8422_2325
    func mix(_ value: Int) { digest = (digest ^ UInt64(truncatingIfNeeded: value)) &* 0x0000_0100_0000_01b3 }
    for i in 0 ..< options.int("decisions", 2_000_000) {
        let user = i % 97 == 0 ? "" : i % 89 == 0 ? "nobody" : snapshot.userIds.id(at: Int32(rng.below(snapshot.userCount)))
        let project = i % 83 == 0 ? "nowhere" : snapshot.projectIds.id(at: Int32(rng.below(snapshot.projectCount)))
        let asset = snapshot.assetIds.id(at: Int32(rng.below(snapshot.assetCount)))
        let decision = snapshot.effectivePermission(user: user, project: project)
        mix(Int(decision.level.rawValue)); mix(Int(decision.reason.rawValue))
        for step in decision.trace { mix(Int(step.reason.rawValue)); mix(Int(step.level.rawValue)); mix(Int(step.subject)) }
        let plain = snapshot.canUse(user: user, asset: asset)
        let scoped = snapshot.canUse(user: user, asset: asset, project: project)
        mix(Int(plain.access.rawValue)); mix(Int(plain.reason.rawValue)); mix(Int(scoped.access.rawValue)); mix(Int(scoped.reason.rawValue))
    }
    print(String(digest, radix: 16))

case "full":
    guard let dir = options.string("dir") else { log("full needs --dir"); exit(2) }
    let parameters = SyntheticWorkspace.Parameters(
        users: options.int("users", 100_000), groups: options.int("groups", 10_000),
        projects: options.int("projects", 50_000), grantsPerProject: options.int("grants-per-project", 20),
        seed: UInt64(options.int("seed", 1))
    )
    let runs = max(1, options.int("runs", 5))
    let decisionCount = options.int("decisions", 1_000_000)
    var results: [String: Double] = [:]

    var start = now()
    let workspace = SyntheticWorkspace.generate(parameters)
    results["generate_ms"] = Double(now() - start) / 1e6
    let grants = workspace.projects.reduce(0) { $0 + $1.grants.count }
    let memberships = workspace.groups.reduce(0) { $0 + $1.members.count }
    log("workspace: \(workspace.users.count) users, \(workspace.groups.count) groups (\(memberships) memberships), \(workspace.assets.count) assets, \(workspace.projects.count) projects, \(grants) grants")

    var document: [UInt8] = []
    WorkspaceDocument.encodeValue(workspace).append(to: &document)
    let documentPath = dir + "/large.json"
    try Data(document).write(to: URL(fileURLWithPath: documentPath))
    log("document: \(document.count / 1_000_000) MB at \(documentPath)")

    var decodeTimes: [Double] = []
    for _ in 0 ..< runs {
        start = now()
        let decoded = try WorkspaceDocument.decode(document)
        decodeTimes.append(Double(now() - start) / 1e6)
        consume(decoded.users.count)
    }
    results["decode_validate_ms"] = median(decodeTimes)
    log("decode + validate: \(Int(median(decodeTimes))) ms (median of \(runs))")

    let dbPath = dir + "/large.db"
    var importTimes: [Double] = []
    let importRuns = max(1, options.int("import-runs", runs))
    for run in 0 ..< importRuns {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: dbPath + suffix) }
        start = now()
        let store = try WorkspaceStore.open(path: dbPath, create: true)
        let version = try store.importWorkspace(workspace)
        importTimes.append(Double(now() - start) / 1e6)
        if run == 0 { log("imported at snapshot version \(version)") }
    }
    results["import_ms"] = median(importTimes)
    log("import (fresh file): \(Int(median(importTimes))) ms (median of \(importRuns))")

    var loadTimes: [Double] = []
    var snapshot: Snapshot? = nil
    for _ in 0 ..< runs {
        snapshot = nil
        start = now()
        snapshot = try SnapshotLoader.load(path: dbPath)
        loadTimes.append(Double(now() - start) / 1e6)
    }
    guard let snapshot else { exit(1) }
    results["load_ms"] = median(loadTimes)
    results["snapshot_footprint_mb"] = Double(snapshot.footprint) / 1e6
    log("snapshot load: \(Int(median(loadTimes))) ms (median of \(runs)); tables \(snapshot.footprint / 1_000_000) MB")

    measureDecisions(snapshot: snapshot, runs: runs, count: decisionCount, into: &results)

    var json = "{"
    json += "\"users\":\(workspace.users.count),\"groups\":\(workspace.groups.count),\"memberships\":\(memberships),"
    json += "\"assets\":\(workspace.assets.count),\"projects\":\(workspace.projects.count),\"grants\":\(grants),\"runs\":\(runs)"
    for key in results.keys.sorted() { json += ",\"\(key)\":\(String(format: "%.3f", results[key] ?? 0))" }
    print(json + "}")

default:
    log("usage: engine-bench full --dir DIR [options] | engine-bench rss --db PATH")
    exit(2)
}

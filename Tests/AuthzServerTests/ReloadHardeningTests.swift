// Hot reload hardening (issue 9): a database truncated in place while loads run.

import AuthzClient
import AuthzEngine
import AuthzServer
import AuthzStore
import AuthzWorkloads
import Foundation
import SQLiteTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Files overwritten in place

/// Copies `source` over `destination` as `cp` does: opens it with O_TRUNC and writes, so
/// readers of the same inode see it empty, then growing.
func copyInPlace(_ source: [UInt8], to destination: String) throws {
    let fd = open(destination, O_WRONLY | O_TRUNC | O_CLOEXEC)
    guard fd >= 0 else { throw TestFailure("open(\(destination)): errno \(errno)") }
    defer { close(fd) }
    var offset = 0
    while offset < source.count {
        let chunk = min(64 * 1024, source.count - offset)
        let written = source.withUnsafeBytes { write(fd, $0.baseAddress! + offset, chunk) }
        guard written > 0 else {
            if errno == EINTR { continue }
            throw TestFailure("write(\(destination)): errno \(errno)")
        }
        offset += written
    }
}

/// A generated workspace large enough that a load takes a while, in a database file with
/// its WAL folded in (a standalone file that can be copied); returns its version.
@discardableResult
func makeLargeDatabase(_ path: String, users: Int = 6000) throws -> UInt64 {
    let generated = SyntheticWorkspace.generate(
        .init(users: users, groups: users / 20, projects: users / 3, grantsPerProject: 6, assets: 40, seed: 11))
    let version = try makeDatabase(path, generated)
    try RawDatabase(path).exec("PRAGMA wal_checkpoint(TRUNCATE)")
    return version
}

@Suite("Hot reload: a database overwritten in place")
struct OverwrittenInPlaceTests {
    /// Issue 9, defect 5: the loader mapped the file (PRAGMA mmap_size), so a page lost to
    /// a truncation while a load read it arrived as SIGBUS and killed the process. Now a
    /// load of a file truncated under it fails with an error, the last good snapshot keeps
    /// serving, and loads succeed again once the file is whole.
    @Test func truncatingTheDatabaseDuringLoadsNeverKillsTheProcess() async throws {
        let directory = try TestDirectory()
        let path = directory.file("authz.db")
        let version = try makeLargeDatabase(path)
        let good = try readFileBytes(path)
        try await withServer(workspace: nil, reloading: .init(), configure: { configuration in
            configuration.databasePath = path
            noAutomaticReload(&configuration)
        }) { server in
            let reloader = try #require(server.reloader)
            #expect(server.snapshots.snapshot?.version == version)
            let stop = Atomic<Bool>(false)
            let rounds = Atomic<Int>(0)
            // The vandal: truncate to a third in place, then `cp` the good file back, at
            // random moments, while loads run back to back.
            let vandal = Task.detached {
                var random = SplitMix64(seed: 5)
                // A number of rounds, not a time: a busy machine runs them slower.
                let deadline = ContinuousClock.now + .seconds(60)
                while ContinuousClock.now < deadline, rounds.load(ordering: .relaxed) < 12 {
                    try await Task.sleep(for: .milliseconds(random.below(15)))
                    guard truncate(path, off_t(good.count / 3)) == 0 else { throw TestFailure("truncate: errno \(errno)") }
                    try await Task.sleep(for: .milliseconds(random.below(15)))
                    try copyInPlace(good, to: path)
                    rounds.add(1, ordering: .relaxed)
                    try await Task.sleep(for: .milliseconds(random.below(300)))
                }
                stop.store(true, ordering: .relaxed)
            }
            var failures: [StoreError] = []
            var successes = 0
            while !stop.load(ordering: .relaxed) {
                let outcome = await reloader.reload()
                // Whatever happened to the load, a whole snapshot of the one version serves.
                #expect(outcome.snapshot?.version == version)
                #expect(server.snapshots.snapshot?.version == version)
                if let error = outcome.error { failures.append(error) } else { successes += 1 }
            }
            try await vandal.value
            // The file is whole again: the next load works.
            let final = await reloader.reload()
            #expect(final.error == nil, "\(final.error.map { "\($0)" } ?? "")")
            #expect(final.snapshot?.version == version)
            #expect(rounds.load(ordering: .relaxed) == 12)
            #expect(successes > 0)
            #expect(!failures.isEmpty, "no load ran into a truncated file")
            for error in failures {
                // A clear error: it names the database and the cause.
                #expect(error.description.contains(path) || error.description.contains("database"), "\(error)")
            }
            let kinds = Set(failures.map(\.code.description))
            print("truncated in place: \(rounds.load(ordering: .relaxed)) rounds, \(successes) loads, \(failures.count) failed: \(kinds)")
        }
    }
}

// MARK: - The file watch

/// A database at `path` whose version is above `version` (fresh imports start low).
@discardableResult
func makeDatabase(_ path: String, above version: UInt64, _ workspace: Workspace = sampleWorkspace()) throws -> UInt64 {
    var current = try makeDatabase(path, workspace)
    let writer = try Writer(path)
    while current <= version { current = try writer.touch() }
    return current
}

func makeDirectory(_ path: String) throws {
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
}

func makeSymlink(_ path: String, to target: String) throws {
    guard symlink(target, path) == 0 else { throw TestFailure("symlink(\(target), \(path)): errno \(errno)") }
}

func renameFile(_ from: String, _ to: String) throws {
    guard rename(from, to) == 0 else { throw TestFailure("rename(\(from), \(to)): errno \(errno)") }
}

@Suite("Hot reload: the file watch follows the database")
struct FileWatchTests {
    /// Issue 9, defect 8: a database reached through symlinks, as a Kubernetes volume
    /// mounts it (`authz.db -> ..data/authz.db`, `..data -> ..2026_01`), then `..data`
    /// swapped atomically to a directory holding a newer database. The watch saw only the
    /// name `authz.db` in the link's directory, so with polling off nothing reloaded.
    @Test func aKubernetesStyleDataSwapIsSeenByTheWatch() async throws {
        let directory = try TestDirectory()
        let volume = directory.file("volume")
        try makeDirectory(volume + "/..2026_01")
        let first = try makeDatabase(volume + "/..2026_01/authz.db")
        try makeSymlink(volume + "/..data", to: "..2026_01")
        try makeSymlink(volume + "/authz.db", to: "..data/authz.db")
        try await withServer(workspace: nil, reloading: .init(), configure: { configuration in
            watchOnly(&configuration)
            configuration.databasePath = volume + "/authz.db"
        }) { server in
            let client = try await server.client()
            #expect(try await servedVersion(client) == first)
            #expect(server.reloader?.statistics.watching == true)

            // The kubelet's update: a new timestamped directory, a temporary link to it,
            // renamed over ..data, then the old directory removed.
            try makeDirectory(volume + "/..2026_02")
            let second = try makeDatabase(
                volume + "/..2026_02/authz.db", above: first, workspace(secretLevelForExplorer: .canView))
            try makeSymlink(volume + "/..data_tmp", to: "..2026_02")
            try renameFile(volume + "/..data_tmp", volume + "/..data")
            try await eventuallyAsync(.seconds(3), "the swapped-in database is served") {
                try await servedVersion(client) == second
            }
            guard case .permission(let level, _, _) = try await client.answer(explorerOnSecret).result else {
                throw TestFailure("not a permission")
            }
            #expect(level == .canView)
            try FileManager.default.removeItem(atPath: volume + "/..2026_01")

            // The watch now follows the new directory: a commit there is seen, also once
            // the follow-up checks after the swap are over (1 s).
            try await Task.sleep(for: .milliseconds(1500))
            let third = try Writer(volume + "/authz.db").touch()
            try await eventuallyAsync(.seconds(3), "a commit to the new database is served") {
                try await servedVersion(client) == third
            }
            #expect(server.reloader?.statistics.watching == true)
            await client.close()
        }
    }

    /// Defect 8: the watch was set up once, on the directory's inode; a directory replaced
    /// by rename left it watching the old one, silently.
    @Test func theDatabaseDirectoryReplacedByRenameIsWatchedAgain() async throws {
        let directory = try TestDirectory()
        let data = directory.file("data")
        try makeDirectory(data)
        let first = try makeDatabase(data + "/authz.db")
        try await withServer(workspace: nil, reloading: .init(), configure: { configuration in
            watchOnly(&configuration)
            configuration.databasePath = data + "/authz.db"
        }) { server in
            let client = try await server.client()
            #expect(try await servedVersion(client) == first)
            try makeDirectory(data + ".new")
            let second = try makeDatabase(data + ".new/authz.db", above: first)
            try renameFile(data, data + ".old")
            try renameFile(data + ".new", data)
            try await eventuallyAsync(.seconds(3), "the new directory's database is served") {
                try await servedVersion(client) == second
            }
            // Past the follow-up checks after the last event (1 s): only the watch can see
            // this commit.
            try await Task.sleep(for: .milliseconds(1500))
            let third = try Writer(data + "/authz.db").touch()
            try await eventuallyAsync(.seconds(3), "a commit in the new directory is served") {
                try await servedVersion(client) == third
            }
            #expect(server.reloader?.statistics.watching == true)
            await client.close()
        }
    }

    /// Defect 8: the database's directory removed, then created again with a new database.
    /// While it is gone the watch says so (Statistics.watching, a warning); once it is
    /// back the new database is loaded and later commits are seen again.
    @Test func theDatabaseDirectoryRemovedAndRecreatedIsPickedUp() async throws {
        let directory = try TestDirectory()
        let data = directory.file("data")
        try makeDirectory(data)
        let first = try makeDatabase(data + "/authz.db")
        try await withServer(workspace: nil, reloading: .init(), configure: { configuration in
            watchOnly(&configuration)
            configuration.databasePath = data + "/authz.db"
        }) { server in
            let client = try await server.client()
            #expect(try await servedVersion(client) == first)
            let reloader = try #require(server.reloader)
            try FileManager.default.removeItem(atPath: data)
            try await eventually(.seconds(3), "the watch reports it is broken") { !reloader.statistics.watching }
            #expect(server.logs.all.contains { $0.level == .warning && $0.message.contains("file watch") })
            #expect(try await servedVersion(client) == first, "the last good snapshot keeps serving")

            try makeDirectory(data)
            let second = try makeDatabase(data + "/authz.db", above: first)
            try await eventuallyAsync(.seconds(3), "the new database is served") {
                try await servedVersion(client) == second
            }
            try await eventually(.seconds(3), "the watch is back") { reloader.statistics.watching }
            #expect(server.logs.all.contains { $0.level == .notice && $0.message.contains("file watch") })
            // Past the follow-up checks after the last event (1 s) and any retry of the
            // failed loads: only the watch can see this commit.
            try await Task.sleep(for: .milliseconds(1500))
            let third = try Writer(data + "/authz.db").touch()
            try await eventuallyAsync(.seconds(3), "a commit is seen by the watch") {
                try await servedVersion(client) == third
            }
            await client.close()
        }
    }
}

@Suite("Hot reload: forced loads coalesce")
struct ForcedReloadCoalescingTests {
    /// Reload calls (and SIGHUPs, through `requestReload`) that arrive while a load is
    /// queued or running are served by one more load, not one load each.
    @Test func fiftyConcurrentReloadCallsCauseAFewLoads() async throws {
        let loader: SnapshotReloader.Loader = { path throws(StoreError) in
            usleep(100_000)  // a slow load, so the calls pile up behind it
            return try SnapshotLoader.load(path: path)
        }
        try await withServer(reloading: .init(loader: loader), configure: noAutomaticReload) { server in
            let reloader = try #require(server.reloader)
            var clients: [SidecarClient] = []
            for _ in 0..<50 { clients.append(try await server.client()) }
            let before = reloader.statistics.loads
            let committed = try Writer(server.configuration.databasePath).touch()
            let versions = try await withThrowingTaskGroup(of: UInt64.self) { group in
                for client in clients {
                    group.addTask { try await client.reload() }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for client in clients { await client.close() }
            #expect(versions.allSatisfy { $0 == committed })
            // Then SIGHUP-style requests in a burst: at most one more load each time one runs.
            for _ in 0..<200 { reloader.requestReload() }
            try await eventually(.seconds(5), "the requested load ran") { reloader.statistics.loads > before }
            try await Task.sleep(for: .milliseconds(300))
            let loads = reloader.statistics.loads - before
            #expect(loads <= 10, "50 Reload calls and 200 requests caused \(loads) loads")
        }
    }
}

// MARK: - Replaced snapshots

/// The snapshots one test's reloader built, held weakly: how many are still alive,
/// whatever other tests running in the same process do with theirs.
final class SnapshotTracker: Sendable {
    private struct Entry {
        weak var snapshot: Snapshot?
    }

    private let entries = Mutex<[Entry]>([])

    func track(_ snapshot: Snapshot) {
        entries.withLock { $0.append(Entry(snapshot: snapshot)) }
    }

    var alive: Int {
        entries.withLock { entries in
            entries.removeAll { $0.snapshot == nil }
            return entries.count
        }
    }

    var tracked: Int { entries.withLock { $0.count } }
}

/// A stop flag and a maximum shared by a test's tasks.
final class SampledRun: Sendable {
    let stop = Atomic<Bool>(false)
    let most = Atomic<Int>(0)
}

@Suite("Hot reload: replaced snapshots")
struct SnapshotRetirementTests {
    /// Issue 9, defect 4: a replaced snapshot was released by a timer, 1 s after the swap,
    /// so under a stream of commits every snapshot of the last second stayed alive. Now
    /// it is released as soon as nothing else holds it, and a build waits for that: at
    /// most the serving snapshot, one retiring and the one being built are alive.
    @Test func underAStreamOfCommitsAtMostThreeSnapshotsAreAlive() async throws {
        let tracker = SnapshotTracker()
        let built = Atomic<Int>(0)
        let loader: SnapshotReloader.Loader = { path throws(StoreError) in
            let snapshot = try SnapshotLoader.load(path: path)
            tracker.track(snapshot)
            built.add(1, ordering: .relaxed)
            return snapshot
        }
        try await withServer(reloading: .init(loader: loader), configure: watchOnly) { server in
            if let initial = server.snapshots.snapshot { tracker.track(initial) }
            let run = SampledRun()
            // The sampler: as often as it can.
            let sampler = Task.detached {
                while !run.stop.load(ordering: .relaxed) {
                    let alive = tracker.alive
                    if alive > run.most.load(ordering: .relaxed) { run.most.store(alive, ordering: .relaxed) }
                    try await Task.sleep(for: .milliseconds(1))
                }
            }
            // Four clients asking continuously.
            let readers = (0..<4).map { _ in
                Task {
                    let client = try await server.client()
                    var answers = 0
                    while !run.stop.load(ordering: .relaxed) {
                        _ = try await client.answer(explorerOnSecret)
                        answers += 1
                    }
                    await client.close()
                    return answers
                }
            }
            // 300 commits at about 100 per second.
            let writer = try Writer(server.configuration.databasePath)
            var last: UInt64 = 0
            let started = ContinuousClock.now
            for index in 0..<300 {
                last = try writer.touch()
                try await Task.sleep(until: started + .milliseconds(10 * (index + 1)))
            }
            let client = try await server.client()
            try await eventuallyAsync(.seconds(10), "the last commit is served") {
                try await servedVersion(client) == last
            }
            await client.close()
            run.stop.store(true, ordering: .relaxed)
            try await sampler.value
            var answers = 0
            for reader in readers { answers += try await reader.value }
            let loads = built.load(ordering: .relaxed)
            print("300 commits: \(loads) loads, \(answers) answers, at most \(run.most.load(ordering: .relaxed)) snapshots alive")
            #expect(loads >= 20, "the commits caused only \(loads) loads")
            #expect(answers > 100, "the clients got only \(answers) answers")
            #expect(run.most.load(ordering: .relaxed) <= 3)
            // Once quiet, only the one in service is left.
            try await eventually(.seconds(2), "replaced snapshots are released") { tracker.alive == 1 }
        }
    }

    /// A replaced snapshot someone keeps holding (here: the test) delays the next build by
    /// at most `retireWaitLimit`, then the build goes ahead; once let go, it is released.
    @Test func aSnapshotHeldElsewhereDelaysABuildOnlyBoundedly() async throws {
        try await withServer(logLevel: .debug, reloading: .init(), configure: noAutomaticReload) { server in
            let client = try await server.client()
            let writer = try Writer(server.configuration.databasePath)
            var pinned = server.snapshots.snapshot
            let first = try writer.touch()
            #expect(try await client.reload() == first)
            // The pinned snapshot is retired now; the next build waits for it, then gives up.
            let committed = try writer.touch()
            let started = ContinuousClock.now
            #expect(try await client.reload() == committed)
            let waited = ContinuousClock.now - started
            #expect(waited >= .milliseconds(900), "\(waited)")
            #expect(waited < .seconds(5), "\(waited)")
            let waits = server.logs.all.filter { $0.message.contains("replaced ones are still in use") }.count
            #expect(waits == 1)
            // Let go: the next build does not wait.
            weak let released = pinned
            pinned = nil
            try await eventually(.seconds(2), "the pinned snapshot is released") { released == nil }
            let next = try writer.touch()
            #expect(try await client.reload() == next)
            #expect(server.logs.all.filter { $0.message.contains("replaced ones are still in use") }.count == waits)
            await client.close()
        }
    }
}

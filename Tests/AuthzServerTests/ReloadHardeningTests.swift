// Hot reload hardening (issue 9): a database truncated in place while loads run.

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
        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
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
                let deadline = ContinuousClock.now + .seconds(4)
                while ContinuousClock.now < deadline, rounds.load(ordering: .relaxed) < 60 {
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
            #expect(rounds.load(ordering: .relaxed) > 5)
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

@Suite("Hot reload: forced loads coalesce")
struct ForcedReloadCoalescingTests {
    /// Reload calls (and SIGHUPs, through `requestReload`) that arrive while a load is
    /// queued or running are served by one more load, not one load each.
    @Test func fiftyConcurrentReloadCallsCauseAFewLoads() async throws {
        let loader: SnapshotReloader.Loader = { path throws(StoreError) in
            usleep(30_000)  // a slow load, so the calls pile up behind it
            return try SnapshotLoader.load(path: path)
        }
        try await withServer(reloading: .init(loader: loader), configure: noAutomaticReload) { server in
            let reloader = try #require(server.reloader)
            let before = reloader.statistics.loads
            let committed = try Writer(server.configuration.databasePath).touch()
            let versions = try await withThrowingTaskGroup(of: UInt64.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        let client = try await server.client()
                        let version = try await client.reload()
                        await client.close()
                        return version
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(versions.allSatisfy { $0 == committed })
            // Then SIGHUP-style requests in a burst: at most one more load each time one runs.
            for _ in 0..<200 { reloader.requestReload() }
            try await eventually(.seconds(5), "the requested load ran") { reloader.statistics.loads > before }
            try await Task.sleep(for: .milliseconds(300))
            let loads = reloader.statistics.loads - before
            #expect(loads <= 8, "50 Reload calls and 200 requests caused \(loads) loads")
        }
    }
}

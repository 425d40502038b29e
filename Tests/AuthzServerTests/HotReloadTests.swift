// Hot reload: every change notification (file watch, polling, explicit check, the Reload
// RPC and its permission), consistency tokens, coalescing, every fault of the database,
// --max-staleness, and answers under concurrent commits checked against snapshots built
// independently for each version.

import AuthzClient
import AuthzEngine
import AuthzQuery
import AuthzServer
import AuthzStore
import AuthzWire
import AuthzWorkloads
import Foundation
import Logging
import SQLiteTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Writers

/// Commits to a test database through a plain SQLite connection, as an admin plane would.
final class Writer {
    let database: RawDatabase
    let path: String

    init(_ path: String) throws {
        self.path = path
        database = try RawDatabase(path, foreignKeys: true)
    }

    /// Grants `level` on `project` to `user` (one commit); returns the new version.
    @discardableResult
    func grant(_ user: String, _ project: String, _ level: Level) throws -> UInt64 {
        try commit(
            """
            INSERT INTO project_grants (project_pk, user_pk, level)
            SELECT p.pk, u.pk, '\(level.name)' FROM projects p, users u WHERE p.id = '\(project)' AND u.id = '\(user)'
            """)
    }

    /// Removes every direct grant of `user` on `project`.
    @discardableResult
    func revoke(_ user: String, _ project: String) throws -> UInt64 {
        try commit(
            """
            DELETE FROM project_grants WHERE user_pk = (SELECT pk FROM users WHERE id = '\(user)')
            AND project_pk = (SELECT pk FROM projects WHERE id = '\(project)')
            """)
    }

    @discardableResult
    func setActive(_ user: String, _ active: Bool) throws -> UInt64 {
        try commit("UPDATE users SET active = \(active ? 1 : 0) WHERE id = '\(user)'")
    }

    /// Restricts `asset` to `group` alone (one commit of two statements).
    @discardableResult
    func regroup(_ asset: String, to group: String) throws -> UInt64 {
        try commit(
            """
            BEGIN;
            DELETE FROM asset_groups WHERE asset_pk = (SELECT pk FROM assets WHERE id = '\(asset)');
            INSERT INTO asset_groups (asset_pk, group_pk)
            SELECT a.pk, g.pk FROM assets a, groups g WHERE a.id = '\(asset)' AND g.id = '\(group)';
            COMMIT;
            """)
    }

    /// Any change: bumps the version with a harmless rename.
    @discardableResult
    func touch() throws -> UInt64 {
        try commit("UPDATE groups SET name = name || '.' WHERE pk = (SELECT min(pk) FROM groups)")
    }

    func commit(_ sql: String) throws -> UInt64 {
        try database.exec(sql)
        return try version()
    }

    func version() throws -> UInt64 {
        UInt64(try database.int("SELECT version FROM meta"))
    }
}

/// A query every sample-workspace test can ask: changes with `Writer.grant("u-explorer", "p-secret", …)`.
let explorerOnSecret = Query.effectivePermission(user: "u-explorer", project: "p-secret")

/// The version `server` answers with now.
func servedVersion(_ client: SidecarClient) async throws -> UInt64 {
    try await client.answer(explorerOnSecret).snapshotVersion
}

/// Reloading with the file watch only / polling only / neither.
func watchOnly(_ configuration: inout ServerConfiguration) {
    configuration.watchDatabase = true
    configuration.pollInterval = nil
}

func pollOnly(_ configuration: inout ServerConfiguration) {
    configuration.watchDatabase = false
    configuration.pollInterval = .milliseconds(50)
}

func noAutomaticReload(_ configuration: inout ServerConfiguration) {
    configuration.watchDatabase = false
    configuration.pollInterval = nil
}

// MARK: - Change notifications

@Suite("Hot reload: change notifications")
struct ChangeNotificationTests {
    @Test func theFileWatchPicksUpACommit() async throws {
        try await withServer(reloading: .init(), configure: watchOnly) { server in
            let client = try await server.client()
            let before = try await servedVersion(client)
            let writer = try Writer(server.configuration.databasePath)
            let committed = try writer.grant("u-explorer", "p-secret", .canView)
            #expect(committed > before)
            try await eventuallyAsync(.seconds(5), "the new version is served") {
                try await servedVersion(client) == committed
            }
            let answer = try await client.answer(explorerOnSecret)
            guard case .permission(let level, _, _) = answer.result else { throw TestFailure("\(answer)") }
            #expect(level == .canView)
            #expect(server.reloader?.statistics.watching == true)
            #expect((server.reloader?.statistics.fileEvents ?? 0) > 0)
            await client.close()
        }
    }

    @Test(arguments: [ReloadMode.delta, .full])
    func reloadsAreDeltaByDefaultAndReportTheirMethod(mode: ReloadMode) async throws {
        try await withServer(reloading: .init(), configure: { configuration in
            watchOnly(&configuration)
            configuration.reloadMode = mode
        }) { server in
            let client = try await server.client()
            let writer = try Writer(server.configuration.databasePath)
            // Deltas start from the snapshot loaded before the reloader ran (the same file).
            for level in [Level.canView, .canEdit, .canView] {
                let committed = try writer.grant("u-explorer", "p-secret", level)
                try await eventuallyAsync(.seconds(5), "the new version is served") {
                    try await servedVersion(client) == committed
                }
                let answer = try await client.answer(explorerOnSecret)
                guard case .permission(let served, _, _) = answer.result else { throw TestFailure("\(answer)") }
                let expected = try SnapshotLoader.load(path: server.configuration.databasePath)
                    .effectivePermission(user: "u-explorer", project: "p-secret")
                #expect(served == expected.level)
            }
            let loads = server.snapshots.loadStatistics
            let status = try await client.status()
            #expect(status.lastLoadMethod == mode.rawValue)
            #expect(status.watching)
            let reloadLines = server.logs.all.filter { $0.message == "reloaded the workspace snapshot" }
            switch mode {
            case .delta:
                #expect(loads.deltaLoads == 3, "\(loads)")
                #expect(loads.fullLoads == 1, "the initial load only: \(loads)")
                #expect(loads.lastMethod == .delta)
                #expect(reloadLines.contains { $0.metadata["method"] == "delta" && $0.metadata["changes"] == "1" })
            case .full:
                #expect(loads.deltaLoads == 0)
                #expect(loads.fullLoads >= 4, "\(loads)")
                #expect(reloadLines.allSatisfy { $0.metadata["method"] == "full" })
            }
            await client.close()
        }
    }

    @Test func pollingPicksUpACommitWithoutTheWatch() async throws {
        try await withServer(reloading: .init(), configure: pollOnly) { server in
            let client = try await server.client()
            let writer = try Writer(server.configuration.databasePath)
            let committed = try writer.setActive("u-explorer", false)
            try await eventuallyAsync(.seconds(5), "the new version is served") {
                try await servedVersion(client) == committed
            }
            #expect(server.reloader?.statistics.watching == false)
            #expect(try await client.status().watching == false)
            #expect(server.reloader?.statistics.fileEvents == 0)
            await client.close()
        }
    }

    @Test func withoutWatchOrPollingNothingChangesUntilAReload() async throws {
        try await withServer(reloading: .init(), configure: noAutomaticReload) { server in
            let client = try await server.client()
            let before = try await servedVersion(client)
            // The reloader's start-up check (which loads what was committed before it ran)
            // comes first: on a slow machine (a sanitized build) it could otherwise run after
            // the commit below and load it.
            try await eventually(.seconds(10), "the reloader's start-up check ran") {
                let loads = server.snapshots.loadStatistics
                return SnapshotLoadResult.allCases.contains { loads.count(.startup, $0) > 0 }
            }
            let writer = try Writer(server.configuration.databasePath)
            let committed = try writer.touch()
            try await Task.sleep(for: .milliseconds(300))
            // The control: nothing else reloads in these tests.
            #expect(try await servedVersion(client) == before)
            #expect(try await client.reload() == committed)
            #expect(try await servedVersion(client) == committed)
            await client.close()
        }
    }

    @Test func reloadLoadsEvenWhenTheVersionIsUnchangedAndReportsIt() async throws {
        try await withServer(reloading: .init(), configure: noAutomaticReload) { server in
            let client = try await server.client()
            let loadsBefore = server.snapshots.current.loads
            let version = try await client.reload()
            #expect(version == server.snapshots.snapshot?.version)
            #expect(server.snapshots.current.loads == loadsBefore + 1)
            await client.close()
        }
    }

    @Test func reloadIsDeniedToOtherUsers() async throws {
        // The policy sees the peer's real uid (SO_PEERCRED); this one admits nobody.
        let seen = Mutex<[UInt32]>([])
        let reloading = RunningServer.Reloading(reloadAllowed: { uid in
            seen.withLock { $0.append(uid) }
            return false
        })
        try await withServer(reloading: reloading, configure: noAutomaticReload) { server in
            let client = try await server.client()
            let loadsBefore = server.snapshots.current.loads
            let response = try await client.call(WireRequest(callId: 7, method: .reload))
            #expect(response.status.code == .permissionDenied)
            #expect(response.status.message.contains("Unix user \(geteuid())"))
            #expect(seen.withLock { $0 } == [UInt32(geteuid())])
            #expect(server.snapshots.current.loads == loadsBefore)
            // The connection goes on.
            _ = try await servedVersion(client)
            await client.close()
        }
    }

    @Test func theDefaultPolicyAdmitsTheDaemonsUserAndRootOnly() {
        let me = UInt32(geteuid())
        #expect(SidecarServer.defaultReloadPolicy(me))
        #expect(SidecarServer.defaultReloadPolicy(0))
        let other: UInt32 = me == 65534 ? 65533 : 65534
        #expect(!SidecarServer.defaultReloadPolicy(other))
    }

    @Test func aBurstOfCommitsCoalescesIntoAFewLoads() async throws {
        try await withServer(reloading: .init(), configure: watchOnly) { server in
            let client = try await server.client()
            let writer = try Writer(server.configuration.databasePath)
            let loadsBefore = server.reloader?.statistics.loads ?? 0
            var last: UInt64 = 0
            for _ in 0..<100 { last = try writer.touch() }
            try await eventuallyAsync(.seconds(5), "the last commit is served") {
                try await servedVersion(client) == last
            }
            try await Task.sleep(for: .milliseconds(100))
            let loads = (server.reloader?.statistics.loads ?? 0) - loadsBefore
            #expect(loads >= 1)
            #expect(loads <= 20, "100 commits caused \(loads) loads")
            await client.close()
        }
    }
}

// MARK: - Consistency tokens

@Suite("Hot reload: consistency tokens")
struct ConsistencyTokenTests {
    @Test func aRequestWaitsForItsVersionUntilTheWatchLoadsIt() async throws {
        try await withServer(reloading: .init(), configure: watchOnly) { server in
            let client = try await server.client()
            let writer = try Writer(server.configuration.databasePath)
            let next = try writer.version() + 1
            async let waiting = client.call(
                WireRequest(
                    callId: 1, minSnapshotVersion: next, deadlineMs: 5000,
                    method: .check(.effectivePermission(.init(user: "u-explorer", project: "p-secret")))))
            try await eventually(.seconds(5), "the request waits") { server.snapshots.waitingRequests == 1 }
            try writer.grant("u-explorer", "p-secret", .canExplore)
            let response = try await waiting
            #expect(response.status.code == .ok)
            #expect(response.snapshotVersion == next)
            guard case .check(.effectivePermission(let result)) = response.answer else {
                throw TestFailure("\(response)")
            }
            #expect(result.level == .canExplore)
            await client.close()
        }
    }

    @Test func readYourWritesWithoutWatchOrPolling() async throws {
        // The request itself triggers the version check.
        try await withServer(reloading: .init(), configure: noAutomaticReload) { server in
            let client = try await server.client()
            let writer = try Writer(server.configuration.databasePath)
            let token = try writer.grant("u-explorer", "p-secret", .canExplore)
            let answer = try await client.answer(explorerOnSecret, minSnapshotVersion: token)
            #expect(answer.snapshotVersion == token)
            guard case .permission(let level, _, _) = answer.result else { throw TestFailure("\(answer)") }
            #expect(level == .canExplore)
            await client.close()
        }
    }

    @Test func theDeadlinePassesWithFailedPreconditionAndLaterRequestsKeepTheirOrder() async throws {
        try await withServer(reloading: .init(), configure: noAutomaticReload) { server in
            let version = try #require(server.snapshots.snapshot?.version)
            let connection = try RawConnection(path: server.socketPath)
            let started = ContinuousClock.now
            // One write, so the server reads all three at once: 2 and 3 queue behind 1.
            var bytes: [UInt8] = []
            WireRequest(
                callId: 1, minSnapshotVersion: version + 5, deadlineMs: 150, method: .check(.seatType(user: "u-admin"))
            ).append(to: &bytes)
            WireRequest(callId: 2, method: .check(.seatType(user: "u-admin"))).append(to: &bytes)
            // A queued request whose own deadline passes while it waits.
            WireRequest(callId: 3, deadlineMs: 20, method: .check(.seatType(user: "u-admin"))).append(to: &bytes)
            try connection.send(bytes)
            let first = try #require(try await connection.readResponse())
            #expect(ContinuousClock.now - started >= .milliseconds(150))
            #expect(first.callId == 1)
            #expect(first.status.code == .failedPrecondition)
            #expect(first.snapshotVersion == version)
            #expect(first.status.message.contains("version \(version)"))
            let second = try #require(try await connection.readResponse())
            #expect(second.callId == 2)
            #expect(second.status.code == .ok)
            let third = try #require(try await connection.readResponse())
            #expect(third.callId == 3)
            #expect(third.status.code == .deadlineExceeded)
        }
    }

    @Test func aRequestWaitsForTheFirstDatabase() async throws {
        // No database at start: a request with a token waits for it to appear.
        try await withServer(workspace: nil, reloading: .init(), configure: watchOnly) { server in
            let client = try await server.client()
            async let waiting = client.call(
                WireRequest(callId: 1, minSnapshotVersion: 1, deadlineMs: 5000, method: .check(.seatType(user: "u-admin"))))
            try await eventually(.seconds(5), "the request waits") { server.snapshots.waitingRequests == 1 }
            try makeDatabase(server.configuration.databasePath)
            let response = try await waiting
            #expect(response.status.code == .ok)
            #expect(response.snapshotVersion >= 1)
            await client.close()
        }
    }
}

// MARK: - Faults

@Suite("Hot reload: faults")
struct ReloadFaultTests {
    /// Breaks the database with `damage`, checks the last good snapshot keeps serving with
    /// the failure in Status (logged once), then repairs it and checks recovery.
    func survives(
        _ damage: (String) throws -> Void, expecting expected: String, configure: @escaping (inout ServerConfiguration) -> Void = watchOnly
    ) async throws {
        try await withServer(reloading: .init(), configure: configure) { server in
            let path = server.configuration.databasePath
            let client = try await server.client()
            let good = try await servedVersion(client)
            try damage(path)
            try await eventuallyAsync(.seconds(5), "the failure shows in Status") {
                try await !client.status().lastLoadError.isEmpty
            }
            // Let a few retries happen.
            try await Task.sleep(for: .milliseconds(300))
            let status = try await client.status()
            #expect(status.lastLoadError.contains(expected), "\(status.lastLoadError)")
            #expect(status.snapshotVersion == good)
            #expect(status.staleForMs > 0)
            #expect(status.lastLoadAttemptUnixMs >= status.loadedAtUnixMs)
            #expect(try await servedVersion(client) == good, "the last good snapshot keeps serving")
            let warnings = server.logs.all.filter { $0.message.contains("cannot reload") }.count
            #expect(warnings == 1, "the failure is logged once, not once per retry")
            #expect((server.reloader?.statistics.failures ?? 0) >= 2, "it retried")

            // Repair: a new database (new inode) moved into place, as an operator restores one.
            let repaired = path + ".repaired"
            try makeDatabase(repaired)
            let next = try Writer(repaired).grant("u-explorer", "p-secret", .canView)  // closed: WAL folded in
            try? FileManager.default.removeItem(atPath: path + "-wal")
            try? FileManager.default.removeItem(atPath: path + "-shm")
            guard rename(repaired, path) == 0 else { throw TestFailure("rename failed") }
            try await eventuallyAsync(.seconds(5), "recovers") {
                let status = try await client.status()
                return status.lastLoadError.isEmpty && status.snapshotVersion == next
            }
            #expect(try await client.status().staleForMs == 0)
            await client.close()
        }
    }

    @Test func theDatabaseIsDeleted() async throws {
        try await survives({ path in try FileManager.default.removeItem(atPath: path) }, expecting: "no database at")
    }

    @Test func theDatabaseIsTruncated() async throws {
        try await survives({ path in
            // Fold the WAL into the file first so the truncation hits real pages.
            try RawDatabase(path).exec("PRAGMA wal_checkpoint(TRUNCATE)")
            guard truncate(path, 4096) == 0 else { throw TestFailure("truncate failed") }
        }, expecting: "malformed", configure: pollOnly)
    }

    @Test func theDatabaseIsReplacedByGarbage() async throws {
        try await survives({ path in
            let garbage = path + ".garbage"
            try Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7919) }).write(to: URL(fileURLWithPath: garbage))
            guard rename(garbage, path) == 0 else { throw TestFailure("rename failed") }
        }, expecting: "not a database")
    }

    @Test func theDatabaseIsMigratedToANewerSchema() async throws {
        try await survives({ path in
            try RawDatabase(path).exec("PRAGMA user_version = 99")
        }, expecting: "99")
    }

    @Test func aDiskOrPermissionErrorOnOpen() async throws {
        // Root ignores file modes, so the errno is injected where the loader opens the file.
        let failing = Atomic<Bool>(false)
        let loader: SnapshotReloader.Loader = { path throws(StoreError) in
            if failing.load(ordering: .relaxed) {
                throw StoreError(code: .io, message: "cannot open \(path): Permission denied (errno 13)")
            }
            return try SnapshotLoader.load(path: path)
        }
        try await withServer(reloading: .init(loader: loader), configure: watchOnly) { server in
            let client = try await server.client()
            let good = try await servedVersion(client)
            failing.store(true, ordering: .relaxed)
            let writer = try Writer(server.configuration.databasePath)
            let next = try writer.touch()
            try await eventuallyAsync(.seconds(5), "the failure shows in Status") {
                try await client.status().lastLoadError.contains("Permission denied")
            }
            #expect(try await servedVersion(client) == good)
            failing.store(false, ordering: .relaxed)
            try await eventuallyAsync(.seconds(5), "recovers by retrying") {
                try await servedVersion(client) == next
            }
            #expect(try await client.status().lastLoadError.isEmpty)
            await client.close()
        }
    }

    @Test func aReloadThatThrowsHalfWay() async throws {
        // The loader reads the whole workspace, then fails before the snapshot is built.
        let failing = Atomic<Bool>(true)
        let loader: SnapshotReloader.Loader = { path throws(StoreError) in
            let (workspace, version) = try SnapshotLoader.readWorkspace(path: path)
            if failing.load(ordering: .relaxed) {
                throw StoreError(code: .io, message: "disk I/O error while reading (SQLITE_IOERR)")
            }
            return Snapshot(workspace: workspace, version: version)
        }
        try await withServer(reloading: .init(loader: loader), configure: noAutomaticReload) { server in
            let client = try await server.client()
            let good = try await servedVersion(client)
            let writer = try Writer(server.configuration.databasePath)
            let next = try writer.revoke("u-editor", "p-secret")
            let response = try await client.call(WireRequest(callId: 9, method: .reload))
            #expect(response.status.code == .unavailable)
            #expect(response.status.message.contains("still serving version \(good)"))
            #expect(response.status.message.contains("SQLITE_IOERR"))
            #expect(response.snapshotVersion == good)
            try await Task.sleep(for: .milliseconds(100))
            #expect(try await servedVersion(client) == good)
            // Retried with backoff until it works.
            failing.store(false, ordering: .relaxed)
            try await eventuallyAsync(.seconds(5), "recovers") { try await servedVersion(client) == next }
            #expect((server.reloader?.statistics.failures ?? 0) >= 2)
            await client.close()
        }
    }

    @Test func theDatabaseIsMissingAtStartThenAppears() async throws {
        try await withServer(workspace: nil, reloading: .init(), configure: pollOnly) { server in
            let client = try await server.client()
            let response = try await client.call(WireRequest(callId: 0, method: .check(.seatType(user: "u-admin"))))
            #expect(response.status.code == .unavailable)
            #expect(try await client.status().lastLoadError.contains("no database at"))
            let version = try makeDatabase(server.configuration.databasePath)
            try await eventuallyAsync(.seconds(5), "loads it") { try await client.status().snapshotVersion == version }
            #expect(try await client.seatType(user: "u-admin").snapshotVersion == version)
            #expect(try await client.status().lastLoadError.isEmpty)
            await client.close()
        }
    }

    @Test func aLongWriteTransactionBlocksNeitherRequestsNorReloads() async throws {
        try await withServer(reloading: .init(), configure: watchOnly) { server in
            let client = try await server.client()
            let path = server.configuration.databasePath
            let writer = try Writer(path)
            let committed = try writer.touch()
            try await eventuallyAsync(.seconds(5), "first commit served") { try await servedVersion(client) == committed }
            // A second writer holds the write lock, with uncommitted changes, for a while.
            let holder = try Writer(path)
            try holder.database.exec("BEGIN IMMEDIATE")
            _ = try holder.database.exec("UPDATE users SET active = 0")
            var slowest: Duration = .zero
            let until = ContinuousClock.now + .milliseconds(600)
            while ContinuousClock.now < until {
                let started = ContinuousClock.now
                #expect(try await servedVersion(client) == committed, "uncommitted changes are never served")
                slowest = max(slowest, ContinuousClock.now - started)
                try await Task.sleep(for: .milliseconds(5))
            }
            // Generous (the suite runs in parallel on 2 cores): blocking would mean SQLite's
            // 5 s busy timeout.
            #expect(slowest < .seconds(2), "requests were slowed to \(slowest)")
            // Reloads still work meanwhile (they read the last committed state).
            #expect(try await client.reload() == committed)
            try holder.database.exec("COMMIT")
            let after = try holder.version()
            try await eventuallyAsync(.seconds(5), "the commit is served") { try await servedVersion(client) == after }
            await client.close()
        }
    }

    @Test func retriesBackOff() async throws {
        let attempts = Atomic<Int>(0)
        let loader: SnapshotReloader.Loader = { _ throws(StoreError) in
            attempts.add(1, ordering: .relaxed)
            throw StoreError(code: .io, message: "injected failure")
        }
        // Backoff 20 ms doubling to 200 ms.
        try await withServer(reloading: .init(loader: loader), configure: noAutomaticReload) { server in
            let client = try await server.client()
            try Writer(server.configuration.databasePath).touch()  // so every retry must load
            let started = ContinuousClock.now
            _ = try await client.call(WireRequest(callId: 0, method: .reload))
            try await Task.sleep(for: .seconds(1))
            let count = attempts.load(ordering: .relaxed)
            let elapsed = ContinuousClock.now - started
            // Without backoff it would be hundreds; with it, 5 tries in the first 320 ms,
            // then one per 200 ms (the sleep may overrun on a busy machine).
            let most = 6 + Int(elapsed / .milliseconds(200))
            #expect(count >= 4 && count <= most, "\(count) attempts in \(elapsed)")
            await client.close()
        }
    }

    @Test func maxStalenessFailsClosedAndRecovers() async throws {
        let failing = Atomic<Bool>(true)
        let loader: SnapshotReloader.Loader = { path throws(StoreError) in
            if failing.load(ordering: .relaxed) { throw StoreError(code: .io, message: "injected failure") }
            return try SnapshotLoader.load(path: path)
        }
        try await withServer(reloading: .init(loader: loader), configure: { configuration in
            watchOnly(&configuration)
            configuration.maxStaleness = .seconds(2)
        }) { server in
            let client = try await server.client()
            let good = try await servedVersion(client)
            let writer = try Writer(server.configuration.databasePath)
            let next = try writer.touch()
            try await eventuallyAsync(.seconds(5), "the failure shows") {
                try await !client.status().lastLoadError.isEmpty
            }
            // Within the limit: still answering from the old snapshot (checked only while
            // clearly within it: a loaded machine may have taken long to get here).
            if try await client.status().staleForMs < 1000 {
                #expect(try await servedVersion(client) == good)
            }
            try await Task.sleep(for: .milliseconds(2100))
            let refused = try await client.call(WireRequest(callId: 0, method: .check(.seatType(user: "u-admin"))))
            #expect(refused.status.code == .unavailable)
            #expect(refused.status.message.contains("max-staleness"))
            #expect(refused.status.message.contains("injected failure"))
            // Status still answers.
            #expect(try await client.status().staleForMs >= 2000)
            failing.store(false, ordering: .relaxed)
            try await eventuallyAsync(.seconds(5), "answers again") { (try? await servedVersion(client)) == next }
            await client.close()
        }
    }
}

// MARK: - Under load

@Suite("Hot reload: answers under concurrent commits")
struct ReloadUnderLoadTests {
    @Test func everyAnswerIsRightForTheVersionItNames() async throws {
        let generated = SyntheticWorkspace.generate(
            .init(users: 300, groups: 30, projects: 120, grantsPerProject: 4, assets: 20, seed: 7))
        let directory = try TestDirectory()
        let path = directory.file("authz.db")
        try makeDatabase(path, generated)
        let (initial, initialVersion) = try WorkspaceStore.open(path: path).exportWorkspace()
        let run = LoadTestRun(initial: Snapshot(workspace: initial, version: initialVersion))

        try await withServer(workspace: nil, reloading: .init(), configure: { configuration in
            configuration.databasePath = path
            configuration.watchDatabase = true
            configuration.pollInterval = .milliseconds(100)
        }) { server in
            let commits = 300
            // The writer: grants added and revoked, users deactivated and back, assets regrouped.
            let writerTask = Task {
                let writer = try Writer(path)
                let store = try WorkspaceStore.open(path: path)
                var random = SplitMix64(seed: 99)
                for _ in 0..<commits {
                    let user = SyntheticWorkspace.userId(random.below(300))
                    let project = SyntheticWorkspace.projectId(random.below(120))
                    switch random.below(4) {
                    case 0: try writer.grant(user, project, [.canView, .canEdit, .fullAccess][random.below(3)])
                    case 1: try writer.revoke(user, project)
                    case 2: try writer.setActive(user, random.below(2) == 0)
                    default:
                        try writer.regroup(
                            SyntheticWorkspace.assetId(random.below(20)), to: SyntheticWorkspace.groupId(random.below(30)))
                    }
                    let (workspace, version) = try store.exportWorkspace()
                    run.expected.withLock { $0[version] = Snapshot(workspace: workspace, version: version) }
                    try await Task.sleep(for: .milliseconds(Int.random(in: 0...4)))
                }
                run.stop.store(true, ordering: .relaxed)
            }
            // The readers: four connections asking continuously.
            let answers = try await withThrowingTaskGroup(of: [(Query, Answer)].self) { group in
                for reader in 0..<4 {
                    group.addTask {
                        let client = try await server.client()
                        var random = SplitMix64(seed: UInt64(reader))
                        var seen: [(Query, Answer)] = []
                        while !run.stop.load(ordering: .relaxed) {
                            let user = SyntheticWorkspace.userId(random.below(300))
                            let query: Query =
                                switch random.below(3) {
                                case 0: .effectivePermission(user: user, project: SyntheticWorkspace.projectId(random.below(120)))
                                case 1:
                                    .canUse(
                                        user: user, asset: SyntheticWorkspace.assetId(random.below(20)),
                                        project: random.below(2) == 0 ? nil : SyntheticWorkspace.projectId(random.below(120)))
                                default: .seatType(user: user)
                                }
                            seen.append((query, try await client.answer(query)))
                        }
                        await client.close()
                        return seen
                    }
                }
                var all: [(Query, Answer)] = []
                for try await batch in group { all += batch }
                return all
            }
            try await writerTask.value
            let snapshots = run.expected.withLock { $0 }
            // A revoke of a grant that is not there commits nothing (no new version).
            #expect(snapshots.count > commits / 2)
            var versions = Set<UInt64>()
            var wrong = 0
            for (query, answer) in answers {
                guard let snapshot = snapshots[answer.snapshotVersion] else {
                    Issue.record("answered from version \(answer.snapshotVersion), which no commit produced")
                    continue
                }
                versions.insert(answer.snapshotVersion)
                if Answer(query, snapshot: snapshot) != answer {
                    wrong += 1
                    if wrong <= 5 { Issue.record("\(query) at version \(answer.snapshotVersion): got \(answer)") }
                }
            }
            #expect(wrong == 0)
            #expect(answers.count > 1000, "only \(answers.count) answers")
            #expect(versions.count > 10, "answers came from only \(versions.count) versions")
            // Delta reloads are the default: most of these loads applied the changed rows.
            let loads = server.snapshots.loadStatistics
            #expect(loads.deltaLoads > 10, "delta loads: \(loads.deltaLoads), full: \(loads.fullLoads)")
        }
    }
}

// MARK: - Helpers

/// What the load test's writer and readers share.
final class LoadTestRun: Sendable {
    let stop = Atomic<Bool>(false)
    /// The snapshot each committed version must be answered from, built independently.
    let expected: Mutex<[UInt64: Snapshot]>

    init(initial: Snapshot) {
        expected = Mutex([initial.version: initial])
    }
}

/// `eventually` for async conditions.
func eventuallyAsync(
    _ limit: Duration = .seconds(5), _ what: String, _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + limit
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("\(what): still false after \(limit)") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

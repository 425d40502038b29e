// The request path over a real socket: every method, the snapshot version on every
// response, Status counters, no snapshot, min_snapshot_version, batches from one
// snapshot, pipelining.

import AuthzClient
import AuthzEngine
import AuthzServer
import AuthzStore
import AuthzWire
import Foundation
import Synchronization
import Testing

@Suite("Requests over the socket")
struct RequestTests {
    @Test func everyCheckMethodIsAnsweredAndNamesTheSnapshotVersion() async throws {
        try await withServer { server in
            let client = try await server.client()
            let version = try #require(server.snapshots.snapshot?.version)
            #expect(version > 0)

            let permission = try await client.effectivePermission(
                user: "u-editor", project: "p-revenue", requiredLevel: .canEdit, explain: true)
            #expect(permission.snapshotVersion == version)
            #expect(permission.result.level == .canEdit)
            #expect(permission.result.reason == .groupGrant)
            #expect(permission.result.allowed)
            #expect(permission.result.steps == [WireResponse.Step(reason: .groupGrant, level: .canEdit, subject: "g-eng")])

            let unexplained = try await client.effectivePermission(
                user: "u-viewer", project: "p-revenue", requiredLevel: .canEdit)
            #expect(unexplained.result.steps.isEmpty)
            #expect(unexplained.result.level == .canView)
            #expect(!unexplained.result.allowed)

            let anonymous = try await client.effectivePermission(user: "", project: "p-revenue")
            #expect(anonymous.result.level == .canViewApp)
            #expect(anonymous.result.reason == .publicShare)
            #expect(!anonymous.result.allowed, "no required_level: allowed is false")

            let use = try await client.canUse(
                user: "u-editor", asset: "a-warehouse", project: "p-revenue", requiredAccess: .use)
            #expect(use.result == WireResponse.CanUseResult(access: .use, reason: .groupAccess, allowed: true))
            #expect(use.snapshotVersion == version)
            let view = try await client.canUse(user: "u-guest", asset: "a-warehouse", requiredAccess: .view)
            #expect(view.result == WireResponse.CanUseResult(access: .none, reason: .notInAssetGroups, allowed: false))

            let seat = try await client.seatType(user: "u-explorer")
            #expect(seat.result == WireResponse.SeatTypeResult(seat: .paidExplorer, paid: true, role: .explorer, roleSource: .explicit))
            let noSeat = try await client.seatType(user: "u-nobody")
            #expect(noSeat.result == WireResponse.SeatTypeResult(seat: .none, paid: false, role: nil, roleSource: nil))

            let capabilities = try await client.capabilities(user: "u-viewer")
            #expect(capabilities.result == Array(CapabilitySet(role: .viewer)))
            #expect(try await client.capabilities(user: "u-gone").result.isEmpty)
            await client.close()
        }
    }

    @Test func statusReportsCountsAndCounters() async throws {
        try await withServer { server in
            let client = try await server.client()
            for _ in 0..<5 { _ = try await client.seatType(user: "u-admin") }
            let status = try await client.status()
            let workspace = sampleWorkspace()
            #expect(status.snapshotVersion == server.snapshots.snapshot?.version)
            #expect(status.users == UInt64(workspace.users.count))
            #expect(status.groups == UInt64(workspace.groups.count))
            #expect(status.assets == UInt64(workspace.assets.count))
            #expect(status.projects == UInt64(workspace.projects.count))
            #expect(status.grants == 3)
            #expect(status.lastLoadError == "")
            #expect(status.loadedAtUnixMs > 1_600_000_000_000)
            #expect(status.lastLoadAttemptUnixMs >= status.loadedAtUnixMs)
            #expect(status.staleForMs == 0)
            #expect(status.connectionsOpen == 1)
            #expect(status.requestsServed >= 5, "the five checks before, at least")

            let other = try await server.client()
            _ = try await other.seatType(user: "u-admin")
            let later = try await client.status()
            #expect(later.connectionsOpen == 2)
            #expect(later.requestsServed >= status.requestsServed + 2)
            await other.close()
            await client.close()
        }
    }

    @Test func withoutASnapshotChecksAreUnavailableAndStatusStillAnswers() async throws {
        // No database file at all: the load fails, the server serves anyway.
        try await withServer(workspace: nil) { server in
            #expect(server.snapshots.snapshot == nil)
            let client = try await server.client()
            let response = try await client.call(
                WireRequest(callId: 0, method: .check(.seatType(user: "u-admin"))))
            #expect(response.status.code == .unavailable)
            #expect(response.status.message.contains("no workspace snapshot is loaded"))
            #expect(response.status.message.contains("no database at"))
            #expect(response.snapshotVersion == 0)

            let batch = try await client.call(WireRequest(callId: 0, method: .batch([.capabilities(user: "")])))
            #expect(batch.status.code == .unavailable)

            let status = try await client.status()
            #expect(status.snapshotVersion == 0)
            #expect(status.users == 0)
            #expect(status.lastLoadError.contains("no database at"))
            #expect(status.lastLoadAttemptUnixMs > 0)

            // A snapshot installed later (what a reloader will do) is served at once.
            let snapshot = Snapshot(workspace: sampleWorkspace(), version: 42)
            server.snapshots.install(snapshot)
            let now = try await client.seatType(user: "u-admin")
            #expect(now.snapshotVersion == 42)
            await client.close()
        }
    }

    @Test func reloadWithoutAReloaderIsUnimplemented() async throws {
        try await withServer { server in
            let client = try await server.client()
            let response = try await client.call(WireRequest(callId: 0, method: .reload))
            #expect(response.status.code == .unimplemented)
            await #expect(throws: AuthzClientError.self) { _ = try await client.reload() }
            await client.close()
        }
    }

    @Test func aTooOldSnapshotFailsThePreconditionAndNamesItsVersion() async throws {
        try await withServer { server in
            let client = try await server.client()
            let version = try #require(server.snapshots.snapshot?.version)
            let started = ContinuousClock.now
            let response = try await client.call(
                WireRequest(
                    callId: 0, minSnapshotVersion: version + 1, deadlineMs: 50, method: .check(.seatType(user: "u-admin"))))
            // It waited for a newer snapshot until its deadline, then gave up.
            #expect(ContinuousClock.now - started >= .milliseconds(50))
            #expect(response.status.code == .failedPrecondition)
            #expect(response.snapshotVersion == version)
            #expect(response.status.message.contains("version \(version)"))
            // The version it has is fine.
            let ok = try await client.seatType(user: "u-admin", minSnapshotVersion: version)
            #expect(ok.snapshotVersion == version)
            await client.close()
        }
    }

    @Test func aBatchIsAnsweredFromOneSnapshotWhileSnapshotsAreSwapped() async throws {
        // Two snapshots that disagree on one check; a task swaps them continuously while
        // batches are answered: every batch must be internally consistent and match the
        // version it names.
        let old = Snapshot(workspace: workspace(secretLevelForExplorer: .canView), version: 1000)
        let new = Snapshot(workspace: workspace(secretLevelForExplorer: .fullAccess), version: 1001)
        try await withServer { server in
            server.snapshots.install(old)
            // Swaps on a thread of its own (not the cooperative pool, which the rest of the
            // suite needs) until told to stop.
            let stop = StopFlag()
            let swapper = Thread {
                var flip = false
                while !stop.isSet {
                    server.snapshots.install(flip ? old : new)
                    flip.toggle()
                    usleep(20)
                }
            }
            swapper.start()
            defer { stop.set() }
            let client = try await server.client()
            let check = WireRequest.Check.effectivePermission(.init(user: "u-explorer", project: "p-secret"))
            var versionsSeen = Set<UInt64>()
            for _ in 0..<40 {
                let reply = try await client.batch(Array(repeating: check, count: 256))
                versionsSeen.insert(reply.snapshotVersion)
                let snapshot = reply.snapshotVersion == old.version ? old : new
                #expect(reply.snapshotVersion == old.version || reply.snapshotVersion == new.version)
                let local = snapshot.effectivePermission(user: "u-explorer", project: "p-secret")
                let levels = Set(reply.result.map { result -> Level? in
                    if case .effectivePermission(let permission) = result { return permission.level }
                    return nil
                })
                #expect(levels == [local.level], "one batch, one snapshot (version \(reply.snapshotVersion))")
            }
            #expect(!versionsSeen.isEmpty)
            await client.close()
        }
        #expect(old.effectivePermission(user: "u-explorer", project: "p-secret").level
            != new.effectivePermission(user: "u-explorer", project: "p-secret").level)
    }

    @Test func answersOnOneConnectionNeverNameAnOlderVersionThanAnEarlierAnswer() async throws {
        // Snapshots of rising versions are installed continuously (as reloads do) while one
        // connection pipelines plain checks mixed with checks that ask for a version newer
        // than the one in service when they were written. A check whose version was
        // installed after its read batch began is answered from that newer snapshot; the
        // checks after it in the batch were answered from the batch's older one, an answer
        // going back a version on one connection (seen through a Litestream follower).
        let workspace = sampleWorkspace()
        try await withServer { server in
            server.snapshots.install(Snapshot(workspace: workspace, version: 1000))
            let stop = StopFlag()
            let installer = Thread {
                var version: UInt64 = 1001
                while !stop.isSet {
                    server.snapshots.install(Snapshot(workspace: workspace, version: version))
                    version += 1
                    usleep(200)
                }
            }
            installer.start()
            defer { stop.set() }
            let connection = try RawConnection(path: server.socketPath)
            var rounds = 0
            var answered = 0
            var nextCallId: UInt64 = 1
            while rounds < 5 {
                rounds += 1
                var bytes: [UInt8] = []
                let first = nextCallId
                for index in 0..<400 {
                    let current = server.snapshots.snapshot?.version ?? 0
                    let wanted = index % 8 == 7 ? current + 1 : 0
                    WireRequest(
                        callId: nextCallId, minSnapshotVersion: wanted, deadlineMs: wanted > 0 ? 2000 : 0,
                        method: .check(.seatType(user: "u-admin"))
                    ).append(to: &bytes)
                    nextCallId += 1
                }
                try connection.send(bytes)
                var last: UInt64 = 0
                for expected in first..<nextCallId {
                    let response = try #require(try await connection.readResponse(timeout: .seconds(10)))
                    #expect(response.callId == expected)
                    // On a slow machine a wait may outlast its deadline: it ends with
                    // FAILED_PRECONDITION (naming the version in service), and checks
                    // queued behind it past their deadline get DEADLINE_EXCEEDED (no version).
                    let code = response.status.code
                    #expect(code == .ok || code == .failedPrecondition || code == .deadlineExceeded)
                    guard code != .deadlineExceeded else { continue }
                    #expect(
                        response.snapshotVersion >= last,
                        "call \(response.callId) answered at version \(response.snapshotVersion) after an answer at \(last)")
                    last = max(last, response.snapshotVersion)
                    answered += 1
                }
            }
            #expect(answered >= 1000)
            connection.closeSocket()
        }
    }

    @Test func manyConcurrentCallsArePipelinedOnOneConnection() async throws {
        try await withServer { server in
            let client = try await server.client()
            let snapshot = try #require(server.snapshots.snapshot)
            let users = ["u-admin", "u-editor", "u-viewer", "u-explorer", "u-guest", "u-gone", "", "u-missing"]
            let projects = ["p-revenue", "p-secret", "p-missing"]
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<2000 {
                    let user = users[index % users.count]
                    let project = projects[(index / users.count) % projects.count]
                    group.addTask {
                        let reply = try await client.effectivePermission(user: user, project: project)
                        let local = snapshot.effectivePermission(user: user, project: project)
                        #expect(reply.result.level == local.level)
                        #expect(reply.result.reason == local.reason)
                    }
                }
                try await group.waitForAll()
            }
            let status = try await client.status()
            #expect(status.connectionsOpen == 1, "all calls shared one connection")
            #expect(status.requestsServed >= 2000)
            await client.close()
        }
    }

    @Test func pipelinedFramesInOneWriteAreAnsweredInOrder() async throws {
        try await withServer { server in
            let connection = try RawConnection(path: server.socketPath)
            var bytes: [UInt8] = []
            for id in 1...500 {
                WireRequest(callId: UInt64(id), method: .check(.seatType(user: id % 2 == 0 ? "u-admin" : "u-guest")))
                    .append(to: &bytes)
            }
            try connection.send(bytes)
            for id in 1...500 {
                let response = try #require(await connection.readResponse())
                #expect(response.callId == UInt64(id))
                guard case .seatType(let seat) = response.checkResult else {
                    Issue.record("call \(id): \(response.status)")
                    continue
                }
                #expect(seat.seat == (id % 2 == 0 ? .paidAuthor : .guest))
            }
        }
    }

    @Test func aClientThatShutsDownItsSendingSideGetsEveryAnswer() async throws {
        try await withServer { server in
            let connection = try RawConnection(path: server.socketPath)
            var bytes: [UInt8] = []
            for id in 1...300 {
                WireRequest(callId: UInt64(id), explain: true, method: .check(.effectivePermission(.init(user: "u-editor", project: "p-revenue"))))
                    .append(to: &bytes)
            }
            try connection.send(bytes)
            connection.shutdownWrite()
            for id in 1...300 {
                let response = try #require(await connection.readResponse(), "answer \(id)")
                #expect(response.callId == UInt64(id))
            }
            #expect(try await connection.readsEndOfStream(), "closed after the last answer")
        }
    }

    @Test func theClientReconnectsAfterTheConnectionIsLost() async throws {
        try await withServer(configure: { $0.idleTimeout = .milliseconds(500) }) { server in
            let client = try await server.client()
            _ = try await client.seatType(user: "u-admin")
            // The idle timeout closes the connection; the next call opens a new one.
            // Once the server has closed it (and the client's loop has seen the end of the
            // stream), so that the close does not race the next call on a loaded machine.
            try await Task.sleep(for: .milliseconds(700))
            try await eventually(.seconds(10), "the idle connection is closed") {
                server.server.status.connectionsOpen == 0
            }
            try await Task.sleep(for: .milliseconds(300))
            let again = try await client.seatType(user: "u-admin")
            #expect(again.result.seat == .paidAuthor)
            await client.close()
            await #expect(throws: AuthzClientError.self) { _ = try await client.status() }
        }
    }
}

/// A flag one thread sets and another polls.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}

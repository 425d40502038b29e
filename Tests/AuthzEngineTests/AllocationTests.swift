import AuthzEngine
import AuthzWorkloads
import CAllocCounter
import Testing

/// The decision hot path must not touch the heap when no explanation is requested
/// (the requirement; the benchmark in bench/ reports the same count).
@Suite("Allocation-free decisions", .enabled(if: authz_alloc_counter_enabled() != 0, "allocations are not counted under a sanitizer"))
struct AllocationTests {
    @Test func decisionsDoNotAllocate() {
        let workspace = SyntheticWorkspace.generate(SyntheticWorkspace.Parameters(users: 2_000, groups: 200, projects: 1_000, grantsPerProject: 20, seed: 7))
        let snapshot = Snapshot(workspace: workspace, version: 1)
        let users = workspace.users.map(\.id) + ["", "u-nobody-with-a-long-identifier-0001"]
        let projects = workspace.projects.map(\.id) + ["p-nobody"]
        let assets = workspace.assets.map(\.id) + ["a-nobody"]
        // Warm up lazily initialised globals (enum name tables, etc.).
        _ = snapshot.effectivePermission(user: users[0], project: projects[0])
        _ = snapshot.canUse(user: users[0], asset: assets[0], project: projects[0])
        _ = snapshot.seatType(user: users[0])
        _ = snapshot.capabilities(user: users[0])

        var checksum = 0
        let before = authz_thread_allocations()
        for i in 0 ..< 20_000 {
            let user = users[(i &* 7919) % users.count]
            let project = projects[(i &* 104_729) % projects.count]
            let asset = assets[(i &* 1_299_709) % assets.count]
            checksum &+= Int(snapshot.effectivePermission(user: user, project: project).level.rawValue)
            checksum &+= Int(snapshot.canUse(user: user, asset: asset).access.rawValue)
            checksum &+= Int(snapshot.canUse(user: user, asset: asset, project: project).access.rawValue)
            checksum &+= Int(snapshot.seatType(user: user).seat.rawValue)
            checksum &+= Int(snapshot.capabilities(user: user).rawValue)
        }
        let allocations = authz_thread_allocations() - before
        #expect(allocations == 0, "decisions allocated \(allocations) times")
        #expect(checksum > 0)
    }

    @Test func theCounterSeesAllocations() {
        // Guards against a counter that always reads zero.
        let before = authz_thread_allocations()
        let array = (0 ..< 100).map { [$0] }
        #expect(array.count == 100)
        #expect(authz_thread_allocations() - before >= 100)
    }
}

import AuthzEngine
import AuthzWorkloads
import Testing

/// Properties that must hold on any workspace, checked on many random ones.
@Suite("Decision properties on random workspaces")
struct PropertyTests {
    static let seeds: [UInt64] = Array(1 ... 40)

    static func randomWorkspace(_ seed: UInt64) -> Workspace {
        var rng = SplitMix64(seed: seed &* 0x9e37)
        return SyntheticWorkspace.generate(SyntheticWorkspace.Parameters(
            users: 40 + rng.below(60), groups: 6 + rng.below(12), projects: 20 + rng.below(20),
            grantsPerProject: 1 + rng.below(6), assets: 3 + rng.below(6), seed: seed
        ))
    }

    static let allLevels: [Level] = Level.allCases.filter { $0 != .none }

    @Test("adding a grant never lowers anyone's effective permission", arguments: seeds)
    func addingAGrantIsMonotone(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var workspace = Self.randomWorkspace(seed)
        let before = Snapshot(workspace: workspace, version: 1)
        for _ in 0 ..< 5 {
            let p = rng.below(workspace.projects.count)
            let level = Self.allLevels[rng.below(Self.allLevels.count)]
            let grant: Grant = rng.chance(0.6)
                ? .user(workspace.users[rng.below(workspace.users.count)].id, level)
                : .group(workspace.groups[rng.below(workspace.groups.count)].id, level)
            workspace.projects[p].grants.append(grant)
        }
        let after = Snapshot(workspace: workspace, version: 2)
        for project in workspace.projects {
            for user in workspace.users.map(\.id) + [""] {
                let old = before.effectivePermission(user: user, project: project.id)
                let new = after.effectivePermission(user: user, project: project.id)
                #expect(new.level >= old.level, "seed \(seed): \(user) on \(project.id) fell from \(old.level.name) to \(new.level.name)")
            }
        }
    }

    @Test("removing a user from an asset's groups never raises their canUse", arguments: seeds)
    func leavingAnAssetGroupIsMonotone(seed: UInt64) {
        var rng = SplitMix64(seed: seed ^ 0xabcdef)
        var workspace = Self.randomWorkspace(seed)
        let customGroups = Set(workspace.groups.map(\.id))
        // Pick (asset, group, member) triples that exist, then remove the member.
        var candidates: [(group: Int, user: String)] = []
        for asset in workspace.assets {
            for groupId in asset.groups where customGroups.contains(groupId) {
                guard let g = workspace.groups.firstIndex(where: { $0.id == groupId }) else { continue }
                for member in workspace.groups[g].members { candidates.append((g, member)) }
            }
        }
        guard !candidates.isEmpty else { return }
        let before = Snapshot(workspace: workspace, version: 1)
        let (g, user) = candidates[rng.below(candidates.count)]
        workspace.groups[g].members.removeAll { $0 == user }
        let after = Snapshot(workspace: workspace, version: 2)
        for asset in workspace.assets {
            let old = before.canUse(user: user, asset: asset.id)
            let new = after.canUse(user: user, asset: asset.id)
            #expect(new.access <= old.access, "seed \(seed): \(user) on \(asset.id) rose from \(old.access.name) to \(new.access.name)")
            for project in workspace.projects {
                let old = before.canUse(user: user, asset: asset.id, project: project.id)
                let new = after.canUse(user: user, asset: asset.id, project: project.id)
                #expect(new.access <= old.access, "seed \(seed): \(user) on \(asset.id) in \(project.id) rose from \(old.access.name) to \(new.access.name)")
            }
        }
    }

    @Test("deactivating a user yields none everywhere", arguments: seeds)
    func deactivationDeniesEverything(seed: UInt64) {
        var rng = SplitMix64(seed: seed ^ 0x5eed)
        var workspace = Self.randomWorkspace(seed)
        let u = rng.below(workspace.users.count)
        workspace.users[u].active = false
        let user = workspace.users[u].id
        let snapshot = Snapshot(workspace: workspace, version: 1)
        for project in workspace.projects {
            let decision = snapshot.effectivePermission(user: user, project: project.id)
            #expect(decision.level == .none && decision.reason == .userInactive)
            for asset in workspace.assets {
                #expect(snapshot.canUse(user: user, asset: asset.id, project: project.id) == AccessDecision(.none, .userInactive))
            }
        }
        for asset in workspace.assets {
            #expect(snapshot.canUse(user: user, asset: asset.id) == AccessDecision(.none, .userInactive))
        }
        #expect(snapshot.seatType(user: user) == .none)
        #expect(snapshot.capabilities(user: user).isEmpty)
    }

    @Test("the reason is always the last explanation step", arguments: seeds.prefix(10))
    func reasonIsTheLastStep(seed: UInt64) {
        let workspace = Self.randomWorkspace(seed)
        let snapshot = Snapshot(workspace: workspace, version: 1)
        for project in workspace.projects {
            for user in workspace.users.map(\.id) + ["", "u-ghost"] {
                let decision = snapshot.effectivePermission(user: user, project: project.id)
                let steps = snapshot.explain(decision)
                #expect(steps.last?.reason == decision.reason && steps.last?.level == decision.level)
                // Levels only move down after the granting step, except the admin floor.
                for (previous, next) in zip(steps, steps.dropFirst()) where next.reason != .adminFloor {
                    #expect(next.level < previous.level)
                }
            }
        }
    }
}

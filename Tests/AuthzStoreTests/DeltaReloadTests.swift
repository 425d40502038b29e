// Delta reloads (issue 13): a snapshot built from the one before plus the logged changes
// must answer every question exactly as a full load of the same version does.

import AuthzEngine
import AuthzStore
import AuthzWorkloads
import SQLiteTestSupport
import Testing

/// Every decision a snapshot answers on a small workspace, one line each: every user (and
/// the anonymous viewer, and an unknown id) × project with its explanation, × asset with and
/// without each project, seat types, capabilities, and the three lookups' complete results.
func decisionDigest(_ snapshot: Snapshot, users: [String], groups: [String], assets: [String], projects: [String]) -> [String] {
    var lines: [String] = []
    let subjects = users + ["", "u-nobody"]
    for user in subjects {
        let seat = snapshot.seatType(user: user)
        lines.append("seat \(user) \(seat.seat) \(seat.paid) \(String(describing: seat.role)) \(String(describing: seat.roleSource)) \(seat.planDowngrade)")
        lines.append("caps \(user) \(snapshot.capabilities(user: user).rawValue)")
        for project in projects + ["p-nothing"] {
            let decision = snapshot.effectivePermission(user: user, project: project)
            let steps = snapshot.explain(decision).map { "\($0.reason)/\($0.level)/\($0.subject ?? "-")" }
            lines.append("perm \(user) \(project) \(decision.level) \(decision.reason) \(steps)")
        }
        for asset in assets + ["a-nothing"] {
            let plain = snapshot.canUse(user: user, asset: asset)
            lines.append("use \(user) \(asset) \(plain.access) \(plain.reason)")
            for project in projects {
                let inProject = snapshot.canUse(user: user, asset: asset, project: project)
                lines.append("use \(user) \(asset) \(project) \(inProject.access) \(inProject.reason)")
            }
        }
        for level in [Level.canViewApp, .canView, .canExplore, .canEdit, .fullAccess] {
            let page = try? snapshot.listProjects(user: user, minLevel: level, pageSize: 1000)
            lines.append("listProjects \(user) \(level) \(page.map { "\($0.entries.map { "\($0.index):\($0.level):\($0.reason)" }) \(String(describing: $0.reason)) \($0.nextPageToken)" } ?? "error")")
        }
        for project in [nil] + projects.map(Optional.some) {
            for access in [Access.view, .use] {
                let page = try? snapshot.listAssets(user: user, project: project, minAccess: access, pageSize: 1000)
                lines.append("listAssets \(user) \(project ?? "-") \(access) \(page.map { "\($0.entries.map { "\($0.index):\($0.access):\($0.reason)" }) \(String(describing: $0.reason)) \($0.nextPageToken)" } ?? "error")")
            }
        }
    }
    for project in projects + ["p-nothing"] {
        for level in [Level.canViewApp, .canView, .canExplore, .canEdit, .fullAccess] {
            let page = try? snapshot.listProjectAccess(project: project, minLevel: level, pageSize: 1000)
            lines.append("listProjectAccess \(project) \(level) \(page.map { "\($0.entries.map { "\($0.index):\($0.level):\($0.reason)" }) \(String(describing: $0.reason)) \($0.nextPageToken)" } ?? "error")")
        }
    }
    lines.append("counts \(snapshot.version) \(snapshot.userCount) \(snapshot.groupCount) \(snapshot.assetCount) \(snapshot.projectCount) \(snapshot.grantCount) \(snapshot.plan) \(snapshot.viewerSeatsPaid) \(snapshot.warnings)")
    return lines
}

/// The first line where two digests differ (nil if equal).
func firstDifference(_ a: [String], _ b: [String]) -> String? {
    for (x, y) in zip(a, b) where x != y { return "delta: \(x)\nfull:  \(y)" }
    return a.count == b.count ? nil : "digest lengths \(a.count) vs \(b.count)"
}

/// Random edits of a workspace, touching every table and every kind of change.
struct WorkspaceMutator {
    var rng: SplitMix64
    var fresh = 0

    mutating func pick<T>(_ items: [T]) -> T? { items.isEmpty ? nil : items[rng.below(items.count)] }

    mutating func level() -> Level { [Level.none, .canViewApp, .canView, .canExplore, .canEdit, .fullAccess][rng.below(6)] }

    mutating func role() -> Role? { [nil, Role.guest, .viewer, .explorer, .editor, .manager, .admin][rng.below(7)] }

    /// One edit. `perRow`: only the kinds a delta applies (no settings, no entity added or
    /// removed).
    mutating func mutate(_ workspace: inout Workspace, perRow: Bool) {
        let kinds = perRow ? 12 : 24
        let users = workspace.users.map(\.id)
        let groups = workspace.groups.map(\.id)
        let assets = workspace.assets.map(\.id)
        switch rng.below(kinds) {
        case 0:  // a user's explicit role
            guard !workspace.users.isEmpty else { return }
            workspace.users[rng.below(workspace.users.count)].role = role()
        case 1:  // deactivate / reactivate
            guard !workspace.users.isEmpty else { return }
            workspace.users[rng.below(workspace.users.count)].active.toggle()
        case 2:  // email (in or out of an allowed domain), origin
            guard !workspace.users.isEmpty else { return }
            let u = rng.below(workspace.users.count)
            workspace.users[u].email = "x\(rng.below(100))@" + (pick(["example.com", "elsewhere.io", "acme.com"]) ?? "x.io")
            if rng.chance(0.5) { workspace.users[u].origin = [Origin.manual, .domain, .invite, .directory][rng.below(4)] }
        case 3, 4:  // group membership
            guard !workspace.groups.isEmpty, let user = pick(users) else { return }
            let g = rng.below(workspace.groups.count)
            if let at = workspace.groups[g].members.firstIndex(of: user) {
                workspace.groups[g].members.remove(at: at)
            } else {
                workspace.groups[g].members.append(user)
            }
        case 5, 6:  // a grant to a user or a group: add, change, remove
            guard !workspace.projects.isEmpty else { return }
            let p = rng.below(workspace.projects.count)
            if !workspace.projects[p].grants.isEmpty, rng.chance(0.4) {
                let k = rng.below(workspace.projects[p].grants.count)
                if rng.chance(0.5) {
                    workspace.projects[p].grants.remove(at: k)
                } else {
                    workspace.projects[p].grants[k].level = level()
                }
            } else {
                let target: Grant.Target? = rng.chance(0.5) ? pick(users).map { .user($0) } : pick(groups).map { .group($0) }
                guard let target, rng.chance(0.2) || !workspace.projects[p].grants.contains(where: { $0.target == target }) else { return }
                workspace.projects[p].grants.append(Grant(target, level: level()))
            }
        case 7:  // the workspace and public shares
            guard !workspace.projects.isEmpty else { return }
            let p = rng.below(workspace.projects.count)
            if rng.chance(0.5) {
                workspace.projects[p].workspaceAccess = level()
            } else {
                workspace.projects[p].publicAccess = rng.chance(0.5) ? .canViewApp : .none
            }
        case 8:  // the owner
            guard !workspace.projects.isEmpty else { return }
            workspace.projects[rng.below(workspace.projects.count)].owner = rng.chance(0.2) ? nil : pick(users)
        case 9:  // a project's assets
            guard !workspace.projects.isEmpty, let asset = pick(assets) else { return }
            let p = rng.below(workspace.projects.count)
            if let at = workspace.projects[p].assets.firstIndex(of: asset) {
                workspace.projects[p].assets.remove(at: at)
            } else {
                workspace.projects[p].assets.append(asset)
            }
        case 10:  // an asset's groups (built-in or custom; the empty list: Admins only)
            guard !workspace.assets.isEmpty else { return }
            let a = rng.below(workspace.assets.count)
            let name = rng.chance(0.5) ? pick(BuiltinGroup.allCases.map(\.name)) : pick(groups)
            guard let name else { return }
            if let at = workspace.assets[a].groups.firstIndex(of: name) {
                workspace.assets[a].groups.remove(at: at)
            } else {
                workspace.assets[a].groups.append(name)
            }
        case 11:  // names no decision reads
            if rng.chance(0.5), !workspace.groups.isEmpty {
                workspace.groups[rng.below(workspace.groups.count)].name = "Group \(rng.below(1000))"
            } else if !workspace.assets.isEmpty {
                workspace.assets[rng.below(workspace.assets.count)].name = "Asset \(rng.below(1000))"
            }
        case 12:  // the plan
            workspace.settings.plan = [Plan.community, .professional, .team, .enterprise][rng.below(4)]
        case 13:  // allowed domains
            if workspace.settings.allowedDomains.contains("acme.com") {
                workspace.settings.allowedDomains.removeAll { $0 == "acme.com" }
            } else {
                workspace.settings.allowedDomains.append("acme.com")
            }
        case 14:  // the default domain role
            workspace.settings.defaultDomainRole = [Role.viewer, .explorer, .editor][rng.below(3)]
        case 15:  // directory-sync flags
            if rng.chance(0.5) {
                workspace.settings.directorySync.enabled.toggle()
            } else {
                workspace.settings.directorySync.roleSync.toggle()
            }
        case 16:  // role mappings
            if !workspace.settings.directorySync.roleMappings.isEmpty, rng.chance(0.5) {
                workspace.settings.directorySync.roleMappings.remove(at: rng.below(workspace.settings.directorySync.roleMappings.count))
            } else if let group = pick(groups), let role = role(),
                !workspace.settings.directorySync.roleMappings.contains(where: { $0.group == group })
            {
                workspace.settings.directorySync.roleMappings.append(RoleMapping(group: group, role: role))
            }
        case 17:  // viewer seats paid
            workspace.settings.viewerSeatsPaid.toggle()
        case 18:  // a new user, member of a group, granted on a project
            fresh += 1
            let id = "u-new\(fresh)"
            workspace.users.append(User(id: id, email: "\(id)@acme.com", origin: .manual, role: role()))
            if !workspace.groups.isEmpty { workspace.groups[rng.below(workspace.groups.count)].members.append(id) }
            if !workspace.projects.isEmpty {
                workspace.projects[rng.below(workspace.projects.count)].grants.append(.user(id, level()))
            }
        case 19:  // delete a user, with its memberships, grants and ownerships
            guard let id = pick(users) else { return }
            workspace.users.removeAll { $0.id == id }
            for g in workspace.groups.indices { workspace.groups[g].members.removeAll { $0 == id } }
            for p in workspace.projects.indices {
                workspace.projects[p].grants.removeAll { $0.target == .user(id) }
                if workspace.projects[p].owner == id { workspace.projects[p].owner = nil }
            }
        case 20:  // a new group or a deleted one
            if rng.chance(0.5), let id = pick(groups) {
                workspace.groups.removeAll { $0.id == id }
                workspace.settings.directorySync.roleMappings.removeAll { $0.group == id }
                for a in workspace.assets.indices { workspace.assets[a].groups.removeAll { $0 == id } }
                for p in workspace.projects.indices { workspace.projects[p].grants.removeAll { $0.target == .group(id) } }
            } else {
                fresh += 1
                workspace.groups.append(Group(id: "g-new\(fresh)", name: "New", members: Array(users.prefix(2))))
            }
        case 21:  // a new asset or a deleted one
            if rng.chance(0.5), let id = pick(assets) {
                workspace.assets.removeAll { $0.id == id }
                for p in workspace.projects.indices { workspace.projects[p].assets.removeAll { $0 == id } }
            } else {
                fresh += 1
                workspace.assets.append(Asset(id: "a-new\(fresh)", kind: .secret, name: "New", groups: groups.prefix(1).map { $0 }))
            }
        case 22:  // a new project or a deleted one
            if rng.chance(0.5), !workspace.projects.isEmpty {
                workspace.projects.remove(at: rng.below(workspace.projects.count))
            } else {
                fresh += 1
                workspace.projects.append(
                    Project(id: "p-new\(fresh)", owner: pick(users), workspaceAccess: level(), grants: pick(groups).map { [.group($0, .canEdit)] } ?? []))
            }
        default:  // several per-row edits in one commit
            for _ in 0 ..< 3 { mutate(&workspace, perRow: true) }
        }
    }
}

@Suite("Delta reloads")
struct DeltaReloadTests {
    static func smallWorkspace(seed: UInt64) -> Workspace {
        var workspace = SyntheticWorkspace.generate(
            SyntheticWorkspace.Parameters(users: 14, groups: 5, projects: 7, grantsPerProject: 3, assets: 5, seed: seed))
        // Directory sync with a role mapping, so group changes move roles.
        workspace.settings.directorySync = DirectorySync(
            enabled: true, roleSync: true,
            roleMappings: workspace.groups.prefix(2).enumerated().map { RoleMapping(group: $0.element.id, role: $0.offset == 0 ? .editor : .admin) })
        return workspace
    }

    static func digest(_ snapshot: Snapshot, _ workspace: Workspace) -> [String] {
        decisionDigest(
            snapshot, users: workspace.users.map(\.id), groups: workspace.groups.map(\.id),
            assets: workspace.assets.map(\.id), projects: workspace.projects.map(\.id))
    }

    /// Random commits through the store; after each, the delta-built snapshot (chained from
    /// the previous delta-built one) answers everything exactly as a full load does.
    @Test(arguments: [UInt64(1), 2, 3, 4, 5, 6])
    func deltaSnapshotsAnswerExactlyAsFullLoads(seed: UInt64) throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("delta.sqlite")
        let store = try WorkspaceStore.open(path: path)
        var workspace = Self.smallWorkspace(seed: seed)
        _ = try store.importWorkspace(workspace)
        var base = try SnapshotLoader.load(path: path)
        let file = DatabaseFileIdentity.of(path)
        var mutator = WorkspaceMutator(rng: SplitMix64(seed: seed &* 7919))
        var applied = 0
        var fallbacks: [String: Int] = [:]
        var commits = 0
        for step in 0 ..< 120 {
            var next = workspace
            mutator.mutate(&next, perRow: step % 3 != 0)
            guard next != workspace else { continue }
            do {
                _ = try store.importChanges(next, mode: .diff)
            } catch {
                continue  // an edit the store refuses (invalid): nothing was written
            }
            workspace = next
            commits += 1
            let full = try SnapshotLoader.load(path: path)
            switch try SnapshotLoader.loadDelta(path: path, base: base, baseFile: file) {
            case .applied(let snapshot, _):
                applied += 1
                #expect(snapshot.version == full.version)
                let difference = firstDifference(Self.digest(snapshot, workspace), Self.digest(full, workspace))
                #expect(difference == nil, "seed \(seed) step \(step): \(difference ?? "")")
                if difference != nil { return }
                base = snapshot
            case .needsFull(let reason):
                fallbacks[reason.prefix(30).description, default: 0] += 1
                base = full
            }
        }
        #expect(commits > 60)
        // Most commits are per-row edits: the delta path must have been taken for them.
        #expect(applied > commits / 3, "applied \(applied) of \(commits); fallbacks \(fallbacks)")
    }

    /// A larger workspace: per-row commits through the store, and after each a random sample
    /// of decisions and lookups from the delta-built snapshot against a full load.
    @Test func aLargerWorkspaceAgreesOnARandomSample() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("larger.sqlite")
        let store = try WorkspaceStore.open(path: path)
        var workspace = SyntheticWorkspace.generate(
            SyntheticWorkspace.Parameters(users: 3000, groups: 300, projects: 1500, grantsPerProject: 8, assets: 40, seed: 5))
        _ = try store.importWorkspace(workspace)
        var base = try SnapshotLoader.load(path: path)
        try #require(base.warnings.isEmpty)
        let file = DatabaseFileIdentity.of(path)
        var mutator = WorkspaceMutator(rng: SplitMix64(seed: 77))
        var rng = SplitMix64(seed: 78)
        var applied = 0
        for step in 0 ..< 25 {
            var next = workspace
            for _ in 0 ..< 1 + step % 3 { mutator.mutate(&next, perRow: true) }
            guard next != workspace, (try? store.importChanges(next, mode: .diff)) != nil else { continue }
            workspace = next
            let full = try SnapshotLoader.load(path: path)
            guard case .applied(let snapshot, _) = try SnapshotLoader.loadDelta(path: path, base: base, baseFile: file) else {
                Issue.record("step \(step): a per-row commit was not applied as a delta")
                base = full
                continue
            }
            applied += 1
            var delta: [String] = []
            var expected: [String] = []
            for _ in 0 ..< 3000 {
                let user = workspace.users[rng.below(workspace.users.count)].id
                let project = workspace.projects[rng.below(workspace.projects.count)].id
                let asset = workspace.assets[rng.below(workspace.assets.count)].id
                for (target, snapshot) in [(0, snapshot), (1, full)] {
                    let decision = snapshot.effectivePermission(user: user, project: project)
                    let line = "\(user) \(project) \(decision.level) \(decision.reason) \(snapshot.explain(decision).map { "\($0.reason)/\($0.subject ?? "-")" }) "
                        + "\(snapshot.canUse(user: user, asset: asset, project: project)) \(snapshot.canUse(user: user, asset: asset)) "
                        + "\(snapshot.seatType(user: user)) \(snapshot.capabilities(user: user).rawValue)"
                    if target == 0 { delta.append(line) } else { expected.append(line) }
                }
            }
            for _ in 0 ..< 20 {
                let user = workspace.users[rng.below(workspace.users.count)].id
                let project = workspace.projects[rng.below(workspace.projects.count)].id
                for (target, snapshot) in [(0, snapshot), (1, full)] {
                    let line = "\((try? snapshot.listProjects(user: user, pageSize: 1000))?.entries.map { "\($0.index):\($0.level):\($0.reason)" } ?? []) "
                        + "\((try? snapshot.listProjectAccess(project: project, pageSize: 1000))?.entries.map { "\($0.index):\($0.level):\($0.reason)" } ?? []) "
                        + "\((try? snapshot.listAssets(user: user, project: project, pageSize: 1000))?.entries.map { "\($0.index):\($0.access):\($0.reason)" } ?? [])"
                    if target == 0 { delta.append(line) } else { expected.append(line) }
                }
            }
            let difference = firstDifference(delta, expected)
            #expect(difference == nil, "step \(step): \(difference ?? "")")
            #expect(snapshot.grantCount == full.grantCount && snapshot.version == full.version)
            if difference != nil { return }
            base = snapshot
        }
        #expect(applied >= 15)
    }

    /// Each per-row kind of change alone is applied as a delta (not a full load), shares
    /// the tables it does not touch, and answers as a full load does.
    @Test func everyPerRowKindIsAppliedIncrementally() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("kinds.sqlite")
        let store = try WorkspaceStore.open(path: path)
        var workspace = Self.smallWorkspace(seed: 42)
        workspace.settings.plan = .enterprise
        _ = try store.importWorkspace(workspace)
        var base = try SnapshotLoader.load(path: path)
        #expect(base.warnings.isEmpty)
        let file = DatabaseFileIdentity.of(path)
        let firstUser = workspace.users[0].id
        let edits: [(String, (inout Workspace) -> Void)] = [
            ("user role", { $0.users[0].role = .manager }),
            ("user deactivated", { $0.users[1].active = false }),
            ("user email", { $0.users[2].email = "someone@elsewhere.io" }),
            ("member added", { w in
                if let at = w.groups[0].members.firstIndex(of: firstUser) { w.groups[0].members.remove(at: at) } else { w.groups[0].members.append(firstUser) }
            }),
            ("user grant", { $0.projects[0].grants.append(.user($0.users[3].id, .canEdit)) }),
            ("group grant", { $0.projects[1].grants.append(.group($0.groups[4].id, .canExplore)) }),
            ("grant removed", { $0.projects[2].grants.removeAll() }),
            ("workspace share", { $0.projects[3].workspaceAccess = .canEdit }),
            ("public share", { $0.projects[4].publicAccess = .canViewApp }),
            ("owner", { $0.projects[5].owner = $0.users[4].id }),
            ("project asset", { $0.projects[6].assets = [$0.assets[0].id, $0.assets[1].id] }),
            ("asset groups", { $0.assets[2].groups = ["public", $0.groups[1].id] }),
            ("asset admins only", { $0.assets[3].groups = [] }),
            ("group renamed", { $0.groups[2].name = "Renamed" }),
        ]
        for (name, edit) in edits {
            edit(&workspace)
            _ = try store.importChanges(workspace, mode: .diff)
            let full = try SnapshotLoader.load(path: path)
            guard case .applied(let snapshot, let changes) = try SnapshotLoader.loadDelta(path: path, base: base, baseFile: file) else {
                Issue.record("\(name): not applied as a delta")
                base = full
                continue
            }
            #expect(changes > 0, "\(name)")
            #expect(firstDifference(Self.digest(snapshot, workspace), Self.digest(full, workspace)) == nil, "\(name)")
            let (shared, total) = snapshot.sharedTableCount(with: base)
            #expect(shared >= total / 2, "\(name): only \(shared) of \(total) tables shared")
            base = snapshot
        }
    }

    /// What the delta cannot say loads everything, with the reason.
    @Test func fallsBackToAFullLoad() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("fallback.sqlite")
        let store = try WorkspaceStore.open(path: path)
        var workspace = Self.smallWorkspace(seed: 9)
        workspace.settings.plan = .enterprise
        _ = try store.importWorkspace(workspace)
        var base = try SnapshotLoader.load(path: path)
        let file = DatabaseFileIdentity.of(path)

        func reason(maxChanges: Int = SnapshotLoader.defaultDeltaMaxChanges, baseFile: DatabaseFileIdentity? = file) throws -> String? {
            if case .needsFull(let reason) = try SnapshotLoader.loadDelta(path: path, base: base, baseFile: baseFile, maxChanges: maxChanges) {
                return reason
            }
            return nil
        }

        // Nothing changed yet: a delta (of nothing) applies.
        #expect(try reason() == nil)
        // Too many changes for the threshold.
        workspace.projects[0].grants.append(.user(workspace.users[5].id, .canView))
        workspace.projects[1].workspaceAccess = .canView
        _ = try store.importChanges(workspace, mode: .diff)
        #expect(try reason(maxChanges: 1)?.contains("more than 1") == true)
        #expect(try reason() == nil)
        // Another file (a replaced database).
        #expect(try reason(baseFile: DatabaseFileIdentity(device: 0, inode: 0)) == "the database file was replaced")
        #expect(try reason(baseFile: nil) == "the database file was replaced")
        // A settings change.
        var settings = workspace
        settings.settings.defaultDomainRole = .editor
        _ = try store.importChanges(settings, mode: .diff)
        #expect(try reason()?.contains("workspace setting") == true)
        base = try SnapshotLoader.load(path: path)
        // An entity added.
        settings.users.append(User(id: "u-zz-new", email: "new@acme.com", origin: .manual, role: .viewer))
        _ = try store.importChanges(settings, mode: .diff)
        #expect(try reason()?.contains("added or removed") == true)
        base = try SnapshotLoader.load(path: path)
        #expect(try reason() == nil)
        // A gap in the log: pruned past the base version.
        _ = try store.setChangeLogRetention(keepVersions: .limit(0), keepMilliseconds: .unchanged)
        settings.users[0].active.toggle()
        _ = try store.importChanges(settings, mode: .diff)
        _ = try store.pruneChangeLog()
        #expect(try reason()?.contains("does not reach back") == true)
    }

    /// A change the engine refuses (a row the full build would warn about) loads everything.
    @Test func aChangeTheBuildWouldWarnAboutLoadsEverything() throws {
        let directory = try StoreScratchDirectory()
        let path = directory.path("warn.sqlite")
        let store = try WorkspaceStore.open(path: path)
        var workspace = Self.smallWorkspace(seed: 11)
        workspace.settings.plan = .community  // no Explorer role
        for u in workspace.users.indices where workspace.users[u].role == .explorer { workspace.users[u].role = .viewer }
        for u in workspace.users.indices where workspace.users[u].origin == .directory { workspace.users[u].role = nil }
        _ = try store.importWorkspace(workspace)
        let base = try SnapshotLoader.load(path: path)
        try #require(base.warnings.isEmpty, "\(base.warnings)")
        let u = try #require(workspace.users.firstIndex(where: { $0.origin != .directory }))
        // The store refuses an explorer on this plan; a hand edit (sqlite3) does not.
        let raw = try RawDatabase(path, foreignKeys: true)
        try raw.exec("UPDATE users SET role = 'explorer' WHERE id = '\(workspace.users[u].id)'")
        let full = try SnapshotLoader.load(path: path)
        #expect(!full.warnings.isEmpty)
        guard case .needsFull(let reason) = try SnapshotLoader.loadDelta(path: path, base: base, baseFile: DatabaseFileIdentity.of(path)) else {
            Issue.record("a plan downgrade was applied as a delta")
            return
        }
        #expect(reason.contains("build warning"))
    }
}

// Delta snapshots (issue 13): the snapshot of a newer database version built from the one in
// service plus the rows that changed, sharing every table the change does not touch.
//
// Structural sharing at table granularity: a `Snapshot`'s tables are immutable `FlatTable`
// objects, so the new snapshot holds the same objects as the old one for everything
// unchanged (the id indexes always: entities are never added or removed by a delta), and a
// fresh copy of each affected table with the changed CSR runs spliced in (the entries before
// the run, the new run, the rest; the start offsets after it shifted). Decisions, lookups and
// the server read the same layout as after a full build, at the same speed.
//
// What is applied here: the state of changed users (their row and their groups), assets
// (their group list) and projects (their row, grants and assets), as the store reads them
// now (SnapshotLoader.loadDelta). Every derived table (roles, the reverse indexes of the
// lookups, the shares, the admins) is recomputed for exactly the affected rows with the same
// rules as the full build (`RoleRules` is shared with it). What is not applied throws
// `DeltaRefused` and the caller loads everything: the loader sends entity insertions and
// deletions (which renumber the id-ordered indexes) and settings changes (which re-derive
// every role) to a full load before asking; here what the full build would warn about (a
// snapshot with build warnings, a row the build would warn about) is refused, so a delta
// snapshot is always identical to a full build, warnings included.

/// The current state of the rows a change touched, read from the store.
public struct SnapshotDelta: Sendable, Equatable {
    /// A changed user: its row and every group it belongs to now.
    public struct UserState: Sendable, Equatable {
        public var user: User
        /// Group ids.
        public var groups: [String]

        public init(user: User, groups: [String]) {
            self.user = user
            self.groups = groups
        }
    }

    public var users: [UserState]
    /// Changed assets, with their complete group lists.
    public var assets: [Asset]
    /// Changed projects, with their complete grant and asset lists.
    public var projects: [Project]

    public init(users: [UserState] = [], assets: [Asset] = [], projects: [Project] = []) {
        self.users = users
        self.assets = assets
        self.projects = projects
    }

    public var isEmpty: Bool { users.isEmpty && assets.isEmpty && projects.isEmpty }
}

/// Why a delta was not applied: the caller loads everything instead.
public struct DeltaRefused: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// The settings a user's role derives from (RULES.md §2), and the derivation: one copy of
/// the rule, for the full build and the delta.
struct RoleRules: Sendable {
    let plan: Plan
    let syncEnabled: Bool
    let roleSync: Bool
    /// Per group index: the highest mapped role's raw value, or -1.
    let mappedRole: [Int8]
    /// Lower-case.
    let allowedDomains: Set<String>
    let defaultDomainRole: Role

    init(settings: WorkspaceSettings, groupIds: IdIndex, unknownGroup: (Int, String) -> Void) {
        var mapped = [Int8](repeating: -1, count: groupIds.count)
        for (i, mapping) in settings.directorySync.roleMappings.enumerated() {
            let g = groupIds.lookup(mapping.group)
            if g < 0 {
                unknownGroup(i, mapping.group)
                continue
            }
            mapped[Int(g)] = max(mapped[Int(g)], Int8(mapping.role.rawValue))
        }
        self.plan = settings.plan
        self.syncEnabled = settings.directorySync.enabled
        self.roleSync = settings.directorySync.roleSync
        self.mappedRole = mapped
        self.allowedDomains = Set(settings.allowedDomains.map { Snapshot.lowercasedASCII($0) })
        self.defaultDomainRole = settings.defaultDomainRole
    }

    struct Resolved {
        var role: Role
        var source: RoleSource
        /// An explorer role the plan does not have, downgraded to viewer (the build warns).
        var planDowngrade = false
        /// A directory user's explicit role, ignored while role sync is on (the build warns).
        var explicitIgnored = false
    }

    /// The role of `user`, a member of `groups` (group indexes).
    func resolve<Groups: Sequence<Int32>>(_ user: User, groups: Groups) -> Resolved {
        var resolved: Resolved
        if user.origin == .directory {
            if syncEnabled, roleSync {
                var best: Int8 = -1
                for g in groups { best = max(best, mappedRole[Int(g)]) }
                if best >= 0, let mapped = Role(rawValue: UInt8(best)) {
                    resolved = Resolved(role: mapped, source: .directoryMapping)
                } else {
                    resolved = Resolved(role: .viewer, source: .directoryDefault)
                }
                resolved.explicitIgnored = user.role != nil
            } else if let explicit = user.role {
                resolved = Resolved(role: explicit, source: .explicit)
            } else {
                resolved = Resolved(role: .viewer, source: .directoryDefault)
            }
        } else if let explicit = user.role {
            resolved = Resolved(role: explicit, source: .explicit)
        } else if allowedDomains.contains(Snapshot.emailDomain(user.email)) {
            resolved = Resolved(role: defaultDomainRole, source: .domainDefault)
        } else {
            resolved = Resolved(role: .guest, source: .inviteDefault)
        }
        if resolved.role == .explorer, !plan.hasExplorerRole {
            resolved.role = .viewer
            resolved.planDowngrade = true
        }
        return resolved
    }
}

extension Snapshot {
    /// A changed CSR run: the new entries of one row.
    struct DeltaRun<Element> {
        var row: Int
        var values: [Element]
    }

    /// The snapshot of `version`: this one with `delta` applied. Unchanged tables are
    /// shared with this snapshot. Throws when the delta is not applied incrementally (see
    /// the top of this file); then load everything.
    public func applying(_ delta: SnapshotDelta, version: UInt64) throws(DeltaRefused) -> Snapshot {
        guard warnings.isEmpty else { throw DeltaRefused("the snapshot in service has build warnings") }
        let userCount = userCount, groupCount = groupCount, assetCount = assetCount, projectCount = projectCount

        // MARK: Users: groups, roles, group members, admins.
        var newUsers = users
        var newUserGroups = userGroups
        var newGroupMemberStart = groupMemberStart
        var newGroupMembers = groupMembers
        var newAdmins = admins
        if !delta.users.isEmpty {
            var changed: [(u: Int, groups: [Int32], record: UserRecord)] = []
            for state in delta.users {
                let u = userIds.lookup(state.user.id)
                guard u >= 0 else { throw DeltaRefused("user '\(state.user.id)' is not in the snapshot") }
                var groups: [Int32] = []
                groups.reserveCapacity(state.groups.count)
                for id in state.groups {
                    let g = groupIds.lookup(id)
                    guard g >= 0 else { throw DeltaRefused("group '\(id)' is not in the snapshot") }
                    groups.append(g)
                }
                groups = Self.sortedUnique(groups)
                let resolved = roleRules.resolve(state.user, groups: groups)
                if resolved.explicitIgnored || resolved.planDowngrade {
                    throw DeltaRefused("the role of user '\(state.user.id)' comes with a build warning")
                }
                var record = UserRecord()
                record.role = resolved.role
                record.roleSource = resolved.source
                record.planDowngrade = resolved.planDowngrade
                record.active = state.user.active
                changed.append((Int(u), groups, record))
            }
            changed.sort { $0.u < $1.u }
            try Self.requireUnique(changed.map(\.u), "user")

            let oldUsers = users, oldUserGroups = userGroups
            let oldStart: (Int) -> Int = { $0 < userCount ? Int(oldUsers[$0].groupStart) : oldUserGroups.count }
            let runs = Self.differing(changed.map { DeltaRun(row: $0.u, values: $0.groups) }, in: userGroups, oldStart: oldStart)
            var start: [Int32]? = nil
            if !runs.isEmpty {
                let spliced = Self.splice(userGroups, rows: userCount, oldStart: oldStart, runs: runs)
                newUserGroups = spliced.table
                start = spliced.start
            }
            newUsers = FlatTable(count: userCount) { buffer in
                buffer.baseAddress!.initialize(from: oldUsers.base, count: userCount)
                if let start {
                    for u in 0 ..< userCount {
                        buffer[u].groupStart = start[u]
                        buffer[u].groupEnd = start[u + 1]
                    }
                }
                for change in changed {
                    buffer[change.u].role = change.record.role
                    buffer[change.u].roleSource = change.record.roleSource
                    buffer[change.u].planDowngrade = change.record.planDowngrade
                    buffer[change.u].active = change.record.active
                }
            }

            if !runs.isEmpty {
                // The members of every group a changed user joined or left.
                var affected = Set<Int32>()
                let changedUsers = Set(runs.map { Int32($0.row) })
                for run in runs {
                    for k in oldStart(run.row) ..< oldStart(run.row + 1) { affected.insert(oldUserGroups[k]) }
                    affected.formUnion(run.values)
                }
                let memberStart = groupMemberStart, members = groupMembers
                var memberRuns: [DeltaRun<Int32>] = []
                for g in affected.sorted() {
                    var list: [Int32] = []
                    for k in Int(memberStart[Int(g)]) ..< Int(memberStart[Int(g) + 1]) where !changedUsers.contains(members[k]) {
                        list.append(members[k])
                    }
                    for run in runs where Self.contains(run.values, g) { list.append(Int32(run.row)) }
                    list.sort()
                    memberRuns.append(DeltaRun(row: Int(g), values: list))
                }
                let spliced = Self.splice(groupMembers, rows: groupCount, oldStart: { Int(memberStart[$0]) }, runs: memberRuns)
                newGroupMembers = spliced.table
                newGroupMemberStart = FlatTable(spliced.start)
            }
            if changed.contains(where: { change in
                let old = oldUsers[change.u]
                return (old.active && old.role == .admin) != (change.record.active && change.record.role == .admin)
            }) {
                let table = newUsers
                newAdmins = FlatTable((0 ..< userCount).filter { table[$0].active && table[$0].role == .admin }.map { Int32($0) })
            }
        }

        // MARK: Assets: groups and built-in groups.
        var newAssets = assets
        var newAssetGroups = assetGroups
        if !delta.assets.isEmpty {
            let builtinByName: [String: BuiltinGroup] = Dictionary(uniqueKeysWithValues: BuiltinGroup.allCases.map { ($0.name, $0) })
            var changed: [(a: Int, groups: [Int32], builtins: UInt8)] = []
            for asset in delta.assets {
                let a = assetIds.lookup(asset.id)
                guard a >= 0 else { throw DeltaRefused("asset '\(asset.id)' is not in the snapshot") }
                var builtins: UInt8 = 0
                var groups: [Int32] = []
                for name in asset.groups {
                    if let builtin = builtinByName[name] {
                        builtins |= builtin.maskBit
                        continue
                    }
                    let g = groupIds.lookup(name)
                    guard g >= 0 else { throw DeltaRefused("group '\(name)' is not in the snapshot") }
                    groups.append(g)
                }
                changed.append((Int(a), Self.sortedUnique(groups), builtins))
            }
            changed.sort { $0.a < $1.a }
            try Self.requireUnique(changed.map(\.a), "asset")
            let oldAssets = assets, oldAssetGroups = assetGroups
            let oldStart: (Int) -> Int = { $0 < assetCount ? Int(oldAssets[$0].groupStart) : oldAssetGroups.count }
            let runs = Self.differing(changed.map { DeltaRun(row: $0.a, values: $0.groups) }, in: assetGroups, oldStart: oldStart)
            var start: [Int32]? = nil
            if !runs.isEmpty {
                let spliced = Self.splice(assetGroups, rows: assetCount, oldStart: oldStart, runs: runs)
                newAssetGroups = spliced.table
                start = spliced.start
            }
            newAssets = FlatTable(count: assetCount) { buffer in
                buffer.baseAddress!.initialize(from: oldAssets.base, count: assetCount)
                if let start {
                    for a in 0 ..< assetCount {
                        buffer[a].groupStart = start[a]
                        buffer[a].groupEnd = start[a + 1]
                    }
                }
                for change in changed { buffer[change.a].builtins = change.builtins }
            }
        }

        // MARK: Projects: grants, assets, shares, and the reverse indexes.
        var newProjects = projects
        var newUserGrants = userGrants
        var newGroupGrants = groupGrants
        var newProjectAssets = projectAssets
        var newUserProjectStart = userProjectStart
        var newUserProjects = userProjects
        var newGroupProjectStart = groupProjectStart
        var newGroupProjects = groupProjects
        var newWorkspaceSharedStart = workspaceSharedStart
        var newWorkspaceShared = workspaceShared
        var newPublicShared = publicShared
        var newGrantCount = grantCount
        var newProjectGrantCounts = projectGrantCounts
        if !delta.projects.isEmpty {
            struct Change {
                var p: Int
                var owner: Int32
                var workspaceAccess: Level
                var publicAccess: Level
                var userGrants: [UInt32]
                var groupGrants: [UInt32]
                var assets: [Int32]
                /// Grants as given (duplicates included).
                var grantCount: Int32
            }
            var changed: [Change] = []
            for project in delta.projects {
                let p = projectIds.lookup(project.id)
                guard p >= 0 else { throw DeltaRefused("project '\(project.id)' is not in the snapshot") }
                var owner: Int32 = -1
                if let id = project.owner {
                    owner = userIds.lookup(id)
                    guard owner >= 0 else { throw DeltaRefused("user '\(id)' is not in the snapshot") }
                }
                guard project.publicAccess <= .canViewApp else {
                    throw DeltaRefused("project '\(project.id)': public_access above can_view_app (the build warns)")
                }
                var userPairs: [UInt32] = []
                var groupPairs: [UInt32] = []
                for grant in project.grants {
                    switch grant.target {
                    case .user(let id):
                        let u = userIds.lookup(id)
                        guard u >= 0 else { throw DeltaRefused("user '\(id)' is not in the snapshot") }
                        userPairs.append(UInt32(u) << 3 | UInt32(grant.level.rawValue))
                    case .group(let id):
                        let g = groupIds.lookup(id)
                        guard g >= 0 else { throw DeltaRefused("group '\(id)' is not in the snapshot") }
                        groupPairs.append(UInt32(g) << 3 | UInt32(grant.level.rawValue))
                    }
                }
                let mergedUser = Self.highestGrants(userPairs)
                let mergedGroup = Self.highestGrants(groupPairs)
                var assetList: [Int32] = []
                for id in project.assets {
                    let a = assetIds.lookup(id)
                    guard a >= 0 else { throw DeltaRefused("asset '\(id)' is not in the snapshot") }
                    assetList.append(a)
                }
                changed.append(
                    Change(
                        p: Int(p), owner: owner, workspaceAccess: project.workspaceAccess, publicAccess: project.publicAccess,
                        userGrants: mergedUser, groupGrants: mergedGroup, assets: Self.sortedUnique(assetList),
                        grantCount: Int32(clamping: project.grants.count)))
            }
            changed.sort { $0.p < $1.p }
            try Self.requireUnique(changed.map(\.p), "project")

            let oldProjects = projects
            let oldUserGrants = userGrants, oldGroupGrants = groupGrants, oldProjectAssets = projectAssets
            let userGrantStart: (Int) -> Int = { $0 < projectCount ? Int(oldProjects[$0].userGrantStart) : oldUserGrants.count }
            let groupGrantStart: (Int) -> Int = { $0 < projectCount ? Int(oldProjects[$0].groupGrantStart) : oldGroupGrants.count }
            let assetStart: (Int) -> Int = { $0 < projectCount ? Int(oldProjects[$0].assetStart) : oldProjectAssets.count }
            let oldGrantCounts = projectGrantCounts
            for change in changed { newGrantCount += Int(change.grantCount) - Int(oldGrantCounts[change.p]) }
            if changed.contains(where: { $0.grantCount != oldGrantCounts[$0.p] }) {
                newProjectGrantCounts = FlatTable(count: projectCount) { buffer in
                    buffer.baseAddress!.initialize(from: oldGrantCounts.base, count: projectCount)
                    for change in changed { buffer[change.p] = change.grantCount }
                }
            }
            let userRuns = Self.differing(changed.map { DeltaRun(row: $0.p, values: $0.userGrants) }, in: userGrants, oldStart: userGrantStart)
            let groupRuns = Self.differing(changed.map { DeltaRun(row: $0.p, values: $0.groupGrants) }, in: groupGrants, oldStart: groupGrantStart)
            let assetRuns = Self.differing(changed.map { DeltaRun(row: $0.p, values: $0.assets) }, in: projectAssets, oldStart: assetStart)
            var userStart: [Int32]? = nil
            var groupStart: [Int32]? = nil
            var assetStartTable: [Int32]? = nil
            if !userRuns.isEmpty {
                let spliced = Self.splice(userGrants, rows: projectCount, oldStart: userGrantStart, runs: userRuns)
                newUserGrants = spliced.table
                userStart = spliced.start
            }
            if !groupRuns.isEmpty {
                let spliced = Self.splice(groupGrants, rows: projectCount, oldStart: groupGrantStart, runs: groupRuns)
                newGroupGrants = spliced.table
                groupStart = spliced.start
            }
            if !assetRuns.isEmpty {
                let spliced = Self.splice(projectAssets, rows: projectCount, oldStart: assetStart, runs: assetRuns)
                newProjectAssets = spliced.table
                assetStartTable = spliced.start
            }
            newProjects = FlatTable(count: projectCount) { buffer in
                buffer.baseAddress!.initialize(from: oldProjects.base, count: projectCount)
                for p in 0 ..< projectCount {
                    if let userStart {
                        buffer[p].userGrantStart = userStart[p]
                        buffer[p].userGrantEnd = userStart[p + 1]
                    }
                    if let groupStart {
                        buffer[p].groupGrantStart = groupStart[p]
                        buffer[p].groupGrantEnd = groupStart[p + 1]
                    }
                    if let assetStartTable {
                        buffer[p].assetStart = assetStartTable[p]
                        buffer[p].assetEnd = assetStartTable[p + 1]
                    }
                }
                for change in changed {
                    buffer[change.p].owner = change.owner
                    buffer[change.p].workspaceAccess = change.workspaceAccess
                    buffer[change.p].publicAccess = change.publicAccess
                }
            }
            let changedProjects = Set(changed.map { Int32($0.p) })

            // Owned and directly granted projects, per user: owner entry first, then the
            // grant (as the build fills them), projects in index order.
            var affectedUsers = Set<Int32>()
            for change in changed {
                let old = oldProjects[change.p]
                if old.owner >= 0 { affectedUsers.insert(old.owner) }
                if change.owner >= 0 { affectedUsers.insert(change.owner) }
                for k in Int(old.userGrantStart) ..< Int(old.userGrantEnd) { affectedUsers.insert(Int32(bitPattern: oldUserGrants[k] >> 3)) }
                for grant in change.userGrants { affectedUsers.insert(Int32(bitPattern: grant >> 3)) }
            }
            let oldUserProjectStart = userProjectStart, oldUserProjects = userProjects
            var userProjectRuns: [DeltaRun<UInt32>] = []
            for u in affectedUsers.sorted() {
                var added: [UInt32] = []
                for change in changed {
                    let p = UInt32(change.p)
                    if change.owner == u { added.append(p << 3 | UInt32(Level.fullAccess.rawValue)) }
                    if let grant = change.userGrants.first(where: { Int32(bitPattern: $0 >> 3) == u }), grant & 7 != 0 {
                        added.append(p << 3 | (grant & 7))
                    }
                }
                var list: [UInt32] = []
                var next = 0
                for k in Int(oldUserProjectStart[Int(u)]) ..< Int(oldUserProjectStart[Int(u) + 1]) {
                    let entry = oldUserProjects[k]
                    if changedProjects.contains(Int32(entry >> 3)) { continue }
                    while next < added.count, added[next] >> 3 < entry >> 3 {
                        list.append(added[next])
                        next += 1
                    }
                    list.append(entry)
                }
                list.append(contentsOf: added[next...])
                userProjectRuns.append(DeltaRun(row: Int(u), values: list))
            }
            let userProjectOldStart: (Int) -> Int = { Int(oldUserProjectStart[$0]) }
            userProjectRuns = Self.differing(userProjectRuns, in: userProjects, oldStart: userProjectOldStart)
            if !userProjectRuns.isEmpty {
                let spliced = Self.splice(userProjects, rows: userCount, oldStart: userProjectOldStart, runs: userProjectRuns)
                newUserProjects = spliced.table
                newUserProjectStart = FlatTable(spliced.start)
            }

            // Projects granting each level to each group.
            var affectedGroups = Set<Int32>()
            for change in changed {
                let old = oldProjects[change.p]
                for k in Int(old.groupGrantStart) ..< Int(old.groupGrantEnd) { affectedGroups.insert(Int32(bitPattern: oldGroupGrants[k] >> 3)) }
                for grant in change.groupGrants { affectedGroups.insert(Int32(bitPattern: grant >> 3)) }
            }
            let oldGroupProjectStart = groupProjectStart, oldGroupProjects = groupProjects
            var groupProjectRuns: [DeltaRun<Int32>] = []
            for g in affectedGroups.sorted() {
                for level in UInt32(1) ... 5 {
                    let slot = Int(g) * 5 + Int(level) - 1
                    var list: [Int32] = []
                    for k in Int(oldGroupProjectStart[slot]) ..< Int(oldGroupProjectStart[slot + 1])
                    where !changedProjects.contains(oldGroupProjects[k]) {
                        list.append(oldGroupProjects[k])
                    }
                    for change in changed where change.groupGrants.contains(UInt32(g) << 3 | level) {
                        list.append(Int32(change.p))
                    }
                    list.sort()
                    groupProjectRuns.append(DeltaRun(row: slot, values: list))
                }
            }
            let groupProjectOldStart: (Int) -> Int = { Int(oldGroupProjectStart[$0]) }
            groupProjectRuns = Self.differing(groupProjectRuns, in: groupProjects, oldStart: groupProjectOldStart)
            if !groupProjectRuns.isEmpty {
                let spliced = Self.splice(groupProjects, rows: groupCount * 5, oldStart: groupProjectOldStart, runs: groupProjectRuns)
                newGroupProjects = spliced.table
                newGroupProjectStart = FlatTable(spliced.start)
            }

            // The shares.
            if changed.contains(where: { oldProjects[$0.p].workspaceAccess != $0.workspaceAccess }) {
                let table = newProjects
                var start: [Int32] = [0]
                var shared: [Int32] = []
                for level in 1 ... 5 {
                    for p in 0 ..< projectCount where table[p].workspaceAccess.rawValue >= level { shared.append(Int32(p)) }
                    start.append(Int32(shared.count))
                }
                newWorkspaceSharedStart = FlatTable(start)
                newWorkspaceShared = FlatTable(shared)
            }
            if changed.contains(where: { oldProjects[$0.p].publicAccess != $0.publicAccess }) {
                let table = newProjects
                newPublicShared = FlatTable((0 ..< projectCount).filter { table[$0].publicAccess > .none }.map { Int32($0) })
            }
        }

        return Snapshot(
            version: version, plan: plan, viewerSeatsPaid: viewerSeatsPaid, warnings: [],
            userIds: userIds, groupIds: groupIds, assetIds: assetIds, projectIds: projectIds,
            users: newUsers, userGroups: newUserGroups, assets: newAssets, assetGroups: newAssetGroups,
            projects: newProjects, userGrants: newUserGrants, groupGrants: newGroupGrants, projectAssets: newProjectAssets,
            userProjectStart: newUserProjectStart, userProjects: newUserProjects,
            groupProjectStart: newGroupProjectStart, groupProjects: newGroupProjects,
            groupMemberStart: newGroupMemberStart, groupMembers: newGroupMembers,
            workspaceSharedStart: newWorkspaceSharedStart, workspaceShared: newWorkspaceShared,
            publicShared: newPublicShared, admins: newAdmins,
            grantCount: newGrantCount, projectGrantCounts: newProjectGrantCounts, roleRules: roleRules)
    }

    /// How many of this snapshot's tables are the same objects as `other`'s (for tests and
    /// the reload log: what a delta shared).
    public func sharedTableCount(with other: Snapshot) -> (shared: Int, total: Int) {
        let pairs: [(AnyObject, AnyObject)] = [
            (users, other.users), (userGroups, other.userGroups), (assets, other.assets), (assetGroups, other.assetGroups),
            (projects, other.projects), (userGrants, other.userGrants), (groupGrants, other.groupGrants),
            (projectAssets, other.projectAssets), (userProjectStart, other.userProjectStart),
            (userProjects, other.userProjects), (groupProjectStart, other.groupProjectStart),
            (groupProjects, other.groupProjects), (groupMemberStart, other.groupMemberStart),
            (groupMembers, other.groupMembers), (workspaceSharedStart, other.workspaceSharedStart),
            (workspaceShared, other.workspaceShared), (publicShared, other.publicShared), (admins, other.admins),
            (projectGrantCounts, other.projectGrantCounts), (userIds.offsets, other.userIds.offsets), (groupIds.offsets, other.groupIds.offsets),
            (assetIds.offsets, other.assetIds.offsets), (projectIds.offsets, other.projectIds.offsets),
        ]
        return (pairs.filter { $0.0 === $0.1 }.count, pairs.count)
    }

    // MARK: - Helpers

    /// Replaces the runs of `runs`' rows (sorted by row, each row once) in a CSR table whose
    /// row `r` is `oldStart(r) ..< oldStart(r + 1)` (`oldStart(rows)` = the table's count);
    /// returns the new table and its start offsets (`rows + 1`).
    static func splice<Element>(
        _ old: FlatTable<Element>, rows: Int, oldStart: (Int) -> Int, runs: [DeltaRun<Element>]
    ) -> (table: FlatTable<Element>, start: [Int32]) {
        var total = old.count
        for run in runs { total += run.values.count - (oldStart(run.row + 1) - oldStart(run.row)) }
        let table = FlatTable<Element>(count: total) { buffer in
            let target = buffer.baseAddress!
            var written = 0
            var from = 0
            for run in runs {
                let start = oldStart(run.row)
                (target + written).initialize(from: old.base + from, count: start - from)
                written += start - from
                run.values.withUnsafeBufferPointer { values in
                    if let base = values.baseAddress { (target + written).initialize(from: base, count: values.count) }
                }
                written += run.values.count
                from = oldStart(run.row + 1)
            }
            (target + written).initialize(from: old.base + from, count: old.count - from)
        }
        var start = [Int32](repeating: 0, count: rows + 1)
        var shift = 0
        var next = 0
        for row in 0 ... rows {
            start[row] = Int32(oldStart(row) + shift)
            if next < runs.count, runs[next].row == row {
                shift += runs[next].values.count - (oldStart(row + 1) - oldStart(row))
                next += 1
            }
        }
        return (table, start)
    }

    /// The runs whose entries differ from the table's.
    static func differing<Element: Equatable>(
        _ runs: [DeltaRun<Element>], in table: FlatTable<Element>, oldStart: (Int) -> Int
    ) -> [DeltaRun<Element>] {
        runs.filter { run in
            let start = oldStart(run.row)
            guard oldStart(run.row + 1) - start == run.values.count else { return true }
            for (k, value) in run.values.enumerated() where table[start + k] != value { return true }
            return false
        }
    }

    static func sortedUnique(_ values: [Int32]) -> [Int32] {
        var result: [Int32] = []
        result.reserveCapacity(values.count)
        for value in values.sorted() where result.last != value { result.append(value) }
        return result
    }

    /// Grants `principal << 3 | level`, sorted, each principal once with its highest level
    /// (what the build's `grantCSR` keeps).
    static func highestGrants(_ grants: [UInt32]) -> [UInt32] {
        var result: [UInt32] = []
        result.reserveCapacity(grants.count)
        for grant in grants.sorted() {
            if let last = result.last, last >> 3 == grant >> 3 {
                result[result.count - 1] = grant
            } else {
                result.append(grant)
            }
        }
        return result
    }

    static func contains(_ sorted: [Int32], _ value: Int32) -> Bool {
        var low = 0
        var high = sorted.count
        while low < high {
            let mid = (low + high) >> 1
            if sorted[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low < sorted.count && sorted[low] == value
    }

    static func requireUnique(_ sorted: [Int], _ kind: String) throws(DeltaRefused) {
        for k in sorted.indices.dropFirst() where sorted[k] == sorted[k - 1] {
            throw DeltaRefused("the delta names one \(kind) twice")
        }
    }
}

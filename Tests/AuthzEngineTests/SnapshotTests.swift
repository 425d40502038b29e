import AuthzEngine
import Testing

/// A small workspace exercising every rule; individual tests read it.
private let workspace = Workspace(
    settings: WorkspaceSettings(
        plan: .enterprise,
        allowedDomains: ["acme.com"],
        defaultDomainRole: .viewer,
        directorySync: DirectorySync(enabled: true, roleSync: true, roleMappings: [
            RoleMapping(group: "g-dir-admins", role: .admin),
            RoleMapping(group: "g-dir-editors", role: .editor),
        ])
    ),
    users: [
        User(id: "u-admin", email: "admin@acme.com", origin: .manual, role: .admin),
        User(id: "u-editor", email: "editor@acme.com", origin: .manual, role: .editor),
        User(id: "u-explorer", email: "explorer@acme.com", origin: .manual, role: .explorer),
        User(id: "u-viewer", email: "viewer@acme.com", origin: .manual, role: .viewer),
        User(id: "u-guest", email: "guest@partner.io", origin: .invite),
        User(id: "u-domain", email: "someone@ACME.com", origin: .domain),
        User(id: "u-dir", email: "dir@acme.com", origin: .directory),
        User(id: "u-dir-plain", email: "plain@acme.com", origin: .directory),
        User(id: "u-off", email: "off@acme.com", origin: .manual, role: .editor, active: false),
    ],
    groups: [
        Group(id: "g-data", name: "Data", members: ["u-editor", "u-guest", "u-explorer", "u-off"]),
        Group(id: "g-dir-admins", name: "Dir admins", source: .directory, members: ["u-dir"]),
        Group(id: "g-dir-editors", name: "Dir editors", source: .directory, members: ["u-dir", "u-dir-plain"]),
        Group(id: "g-empty", name: "Empty"),
    ],
    assets: [
        Asset(id: "a-z-open", kind: .dataConnection, name: "Open"),
        Asset(id: "a-data", kind: .dataConnection, name: "Data", groups: ["g-data"]),
        Asset(id: "a-b-locked", kind: .secret, name: "Locked", groups: []),
        Asset(id: "a-guests", kind: .secret, name: "Guests", groups: ["workspace_guests"]),
        Asset(id: "a-public", kind: .externalFile, name: "Public", groups: ["public"]),
    ],
    projects: [
        Project(id: "p-main", owner: "u-admin", workspaceAccess: .canView, grants: [
            .group("g-data", .canEdit), .user("u-guest", .canExplore), .user("u-viewer", .fullAccess),
            .user("u-explorer", .canView), .user("u-explorer", .fullAccess),
        ], assets: ["a-z-open"]),
        Project(id: "p-locked", grants: [.user("u-editor", .fullAccess), .group("g-data", .canEdit)],
                assets: ["a-z-open", "a-data", "a-b-locked"]),
        Project(id: "p-app", workspaceAccess: .canViewApp, publicAccess: .canViewApp),
        Project(id: "p-none"),
    ]
)

private let snapshot = Snapshot(workspace: workspace, version: 42)

@Suite("Snapshot decisions")
struct SnapshotTests {
    @Test func interningAndCounts() {
        #expect(snapshot.version == 42)
        #expect(snapshot.userCount == 9)
        #expect(snapshot.groupCount == 4)
        #expect(snapshot.assetCount == 5)
        #expect(snapshot.projectCount == 4)
        #expect(snapshot.grantCount == 7)
        #expect(snapshot.warnings.isEmpty)
        // Every kind is indexed in id (byte) order.
        #expect(snapshot.assetIds.ids == ["a-b-locked", "a-data", "a-guests", "a-public", "a-z-open"])
        #expect(snapshot.userIds.ids == ["u-admin", "u-dir", "u-dir-plain", "u-domain", "u-editor", "u-explorer", "u-guest", "u-off", "u-viewer"])
        #expect(snapshot.projectIds.ids == ["p-app", "p-locked", "p-main", "p-none"])
        #expect(snapshot.groupIds.ids == ["g-data", "g-dir-admins", "g-dir-editors", "g-empty"])
        #expect(snapshot.userIds.index(of: "u-viewer") == 8)
        #expect(snapshot.userIds.index(of: "u-nobody") == nil)
        #expect(snapshot.userKey("") == .anonymous)
        #expect(snapshot.userKey("nope") == .unknown)
    }

    @Test func roleResolution() {
        #expect(snapshot.seatType(user: "u-dir") == SeatDecision(seat: .paidAuthor, paid: true, role: .admin, roleSource: .directoryMapping, planDowngrade: false))
        #expect(snapshot.seatType(user: "u-dir-plain").role == .editor)
        #expect(snapshot.seatType(user: "u-domain") == SeatDecision(seat: .viewer, paid: false, role: .viewer, roleSource: .domainDefault, planDowngrade: false))
        #expect(snapshot.seatType(user: "u-guest") == SeatDecision(seat: .guest, paid: false, role: .guest, roleSource: .inviteDefault, planDowngrade: false))
        #expect(snapshot.seatType(user: "u-off") == .none)
        #expect(snapshot.seatType(user: "") == .none)
        #expect(snapshot.seatType(user: "u-ghost") == .none)
    }

    @Test func explorerOnPlanWithoutItIsDowngradedWithWarning() {
        var downgraded = workspace
        downgraded.settings.plan = .professional
        let snap = Snapshot(workspace: downgraded, version: 1)
        #expect(snap.seatType(user: "u-explorer") == SeatDecision(seat: .viewer, paid: false, role: .viewer, roleSource: .explicit, planDowngrade: true))
        #expect(snap.warnings.count == 1)
        #expect(snap.effectivePermission(user: "u-explorer", project: "p-main").level == .canView)
    }

    @Test func grantSourcesAndTies() {
        let owner = snapshot.effectivePermission(user: "u-admin", project: "p-main")
        #expect(owner.level == .fullAccess && owner.reason == .owner)
        let group = snapshot.effectivePermission(user: "u-editor", project: "p-main")
        #expect(group.level == .canEdit && group.reason == .groupGrant)
        #expect(snapshot.explain(group) == [ExplanationStep(reason: .groupGrant, level: .canEdit, subject: "g-data")])
        let workspaceShare = snapshot.effectivePermission(user: "u-dir-plain", project: "p-main")
        #expect(workspaceShare.level == .canView && workspaceShare.reason == .workspaceShare)
        // Workspace and public both give can_view_app: the earlier source wins the tie.
        let tie = snapshot.effectivePermission(user: "u-editor", project: "p-app")
        #expect(tie.level == .canViewApp && tie.reason == .workspaceShare)
        let none = snapshot.effectivePermission(user: "u-editor", project: "p-none")
        #expect(none.level == .none && none.reason == .noGrant)
    }

    @Test func tiedGroupGrantsNameTheSmallestGroupId() {
        // RULES.md §4 step 2: among groups giving the same level, the smallest id (byte
        // order), whatever order the document lists the groups and grants in.
        for reversed in [false, true] {
            var groups = [
                Group(id: "g-b", name: "B", members: ["u-1"]),
                Group(id: "g-a", name: "A", members: ["u-1"]),
                Group(id: "g-C", name: "C", members: ["u-1"]),
            ]
            var grants: [Grant] = [.group("g-b", .canEdit), .group("g-a", .canEdit), .group("g-C", .canView)]
            if reversed {
                groups.reverse()
                grants.reverse()
            }
            let snap = Snapshot(
                workspace: Workspace(
                    settings: WorkspaceSettings(plan: .team),
                    users: [User(id: "u-1", email: "one@x.io", origin: .manual, role: .editor)],
                    groups: groups,
                    projects: [Project(id: "p-1", grants: grants)]),
                version: 1)
            let decision = snap.effectivePermission(user: "u-1", project: "p-1")
            #expect(snap.explain(decision) == [ExplanationStep(reason: .groupGrant, level: .canEdit, subject: "g-a")])
        }
    }

    @Test func duplicateGrantsKeepTheHighest() {
        // u-explorer has can_view and full_access; the cap then applies.
        let decision = snapshot.effectivePermission(user: "u-explorer", project: "p-main")
        #expect(decision.level == .canExplore && decision.reason == .roleCap)
        #expect(snapshot.explain(decision) == [
            ExplanationStep(reason: .userGrant, level: .fullAccess),
            ExplanationStep(reason: .roleCap, level: .canExplore),
        ])
    }

    @Test func capsFloorsAndExploration() {
        let viewer = snapshot.effectivePermission(user: "u-viewer", project: "p-main")
        #expect(viewer.level == .canView && viewer.reason == .roleCap)
        let guest = snapshot.effectivePermission(user: "u-guest", project: "p-main")
        #expect(guest.level == .canView && guest.reason == .exploreNeedsRole)
        #expect(snapshot.explain(guest).map(\.reason) == [.userGrant, .exploreNeedsRole])
        let floor = snapshot.effectivePermission(user: "u-admin", project: "p-none")
        #expect(floor.level == .canExplore && floor.reason == .adminFloor)
        #expect(snapshot.explain(floor).map(\.reason) == [.noGrant, .adminFloor])
    }

    @Test func guestsIgnoreGroupAndWorkspaceShares() {
        let locked = snapshot.effectivePermission(user: "u-guest", project: "p-locked")
        #expect(locked.level == .none && locked.reason == .noGrant)
        let app = snapshot.effectivePermission(user: "u-guest", project: "p-app")
        #expect(app.level == .canViewApp && app.reason == .publicShare)
    }

    @Test func assetDowngradeNamesTheFirstAssetById() {
        // p-locked uses a-z-open, a-data and a-b-locked; u-editor can open a-z-open and a-data
        // but not a-b-locked (admins only): the first missing asset by id is a-b-locked.
        let decision = snapshot.effectivePermission(user: "u-editor", project: "p-locked")
        #expect(decision.level == .canView && decision.reason == .assetDowngrade)
        #expect(snapshot.explain(decision) == [
            ExplanationStep(reason: .userGrant, level: .fullAccess),
            ExplanationStep(reason: .assetDowngrade, level: .canView, subject: "a-b-locked"),
        ])
        #expect(decision.trace.last?.reason == decision.reason)
    }

    @Test func unknownsAnonymousAndInactive() {
        #expect(snapshot.effectivePermission(user: "u-ghost", project: "p-ghost").reason == .unknownProject)
        #expect(snapshot.effectivePermission(user: "u-ghost", project: "p-main").reason == .unknownUser)
        #expect(snapshot.effectivePermission(user: "u-off", project: "p-main").reason == .userInactive)
        let anonymous = snapshot.effectivePermission(user: "", project: "p-app")
        #expect(anonymous.level == .canViewApp && anonymous.reason == .publicShare)
        #expect(snapshot.effectivePermission(user: "", project: "p-main").reason == .noGrant)
    }

    @Test func canUseRules() {
        #expect(snapshot.canUse(user: "u-ghost", asset: "a-ghost") == AccessDecision(.none, .unknownAsset))
        #expect(snapshot.canUse(user: "u-ghost", asset: "a-data") == AccessDecision(.none, .unknownUser))
        #expect(snapshot.canUse(user: "u-off", asset: "a-data") == AccessDecision(.none, .userInactive))
        #expect(snapshot.canUse(user: "u-admin", asset: "a-b-locked") == AccessDecision(.use, .admin))
        #expect(snapshot.canUse(user: "u-editor", asset: "a-b-locked") == AccessDecision(.none, .notInAssetGroups))
        #expect(snapshot.canUse(user: "u-editor", asset: "a-data") == AccessDecision(.use, .groupAccess))
        #expect(snapshot.canUse(user: "u-explorer", asset: "a-data") == AccessDecision(.view, .roleCannotUse))
        #expect(snapshot.canUse(user: "u-viewer", asset: "a-z-open") == AccessDecision(.view, .roleCannotUse))
        #expect(snapshot.canUse(user: "u-guest", asset: "a-z-open") == AccessDecision(.none, .notInAssetGroups))
        #expect(snapshot.canUse(user: "u-guest", asset: "a-guests") == AccessDecision(.use, .groupAccess))
        #expect(snapshot.canUse(user: "u-guest", asset: "a-data") == AccessDecision(.use, .groupAccess))
        #expect(snapshot.canUse(user: "", asset: "a-public") == AccessDecision(.view, .anonymousPublic))
        #expect(snapshot.canUse(user: "", asset: "a-z-open") == AccessDecision(.none, .notInAssetGroups))
    }

    @Test func canUseInAProject() {
        #expect(snapshot.canUse(user: "u-editor", asset: "a-data", project: "p-main") == AccessDecision(.use, .groupAccess))
        #expect(snapshot.canUse(user: "u-editor", asset: "a-data", project: "p-locked") == AccessDecision(.view, .projectNeedsCanEdit))
        #expect(snapshot.canUse(user: "u-editor", asset: "a-data", project: "p-ghost") == AccessDecision(.none, .unknownProject))
        // RULES.md §5 step 1: an unknown project is answered before anything about the user.
        #expect(snapshot.canUse(user: "u-editor", asset: "a-b-locked", project: "p-ghost") == AccessDecision(.none, .unknownProject))
        #expect(snapshot.canUse(user: "u-ghost", asset: "a-data", project: "p-ghost") == AccessDecision(.none, .unknownProject))
        #expect(snapshot.canUse(user: "u-off", asset: "a-data", project: "p-ghost") == AccessDecision(.none, .unknownProject))
        #expect(snapshot.canUse(user: "", asset: "a-z-open", project: "p-ghost") == AccessDecision(.none, .unknownProject))
        #expect(snapshot.canUse(user: "u-editor", asset: "a-ghost", project: "p-ghost") == AccessDecision(.none, .unknownAsset))
        #expect(snapshot.canUse(user: "u-admin", asset: "a-data", project: "p-none") == AccessDecision(.view, .projectNeedsCanEdit))
        #expect(snapshot.canUse(user: "u-admin", asset: "a-data", project: "p-main") == AccessDecision(.use, .admin))
        #expect(snapshot.canUse(user: "", asset: "a-public", project: "p-app") == AccessDecision(.view, .anonymousPublic))
    }

    @Test func capabilities() {
        #expect(Array(snapshot.capabilities(user: "u-admin")) == Capability.allCases)
        #expect(Array(snapshot.capabilities(user: "u-guest")) == [.accessSharedProjects, .accessSharedApps])
        #expect(snapshot.capabilities(user: "u-off").isEmpty)
        #expect(snapshot.capabilities(user: "").isEmpty)
        let explorer = snapshot.capabilities(user: "u-explorer")
        #expect(explorer.contains(.buildExplorations) && !explorer.contains(.createProjects))
    }

    @Test func danglingReferencesAreSkippedWithWarnings() {
        var broken = workspace
        broken.groups[0].members.append("u-missing")
        broken.projects[0].grants.append(.group("public", .fullAccess))
        broken.projects[0].assets.append("a-missing")
        broken.users.append(User(id: "u-admin", email: "dup@acme.com", origin: .manual, role: .guest))
        let snap = Snapshot(workspace: broken, version: 1)
        #expect(snap.warnings.count == 4)
        #expect(snap.seatType(user: "u-admin").role == .admin)
        #expect(snap.effectivePermission(user: "u-editor", project: "p-main").level == .canEdit)
    }
}

@Suite("IdIndex")
struct IdIndexTests {
    @Test func lookupsByStringAndBytes() {
        let ids = (0 ..< 5000).map { "user-\($0)-with-a-long-suffix-\($0 * 7)" } + ["", "a", "ä-unicode"]
        let index = IdIndex(ids)
        for (i, id) in ids.enumerated() {
            #expect(index.lookup(id) == Int32(i))
            let viaBytes = Array(id.utf8).withUnsafeBytes { index.lookup($0) }
            #expect(viaBytes == Int32(i))
            #expect(index.id(at: Int32(i)) == id)
        }
        #expect(index.lookup("user-1-with-a-long-suffix-8") == -1)
        #expect(index.lookup("nope") == -1)
    }

    @Test func duplicatesKeepTheFirst() {
        var duplicates: [Int] = []
        let index = IdIndex(["x", "y", "x"], duplicates: &duplicates)
        #expect(duplicates == [2])
        #expect(index.lookup("x") == 0)
    }

    @Test func liveCountCountsSnapshotsNotYetFreed() {
        // Other tests in this process build and free snapshots meanwhile, so only what
        // this test holds is certain: the count is at least that.
        let held = (0..<20).map { Snapshot(workspace: Workspace(settings: WorkspaceSettings(plan: .team)), version: UInt64($0)) }
        #expect(Snapshot.liveCount >= held.count)
        withExtendedLifetime(held) {}
    }
}

public import AuthzEngine

/// A small, realistic demo workspace ("Acme Analytics" on the Enterprise plan): Okta
/// directory sync with mapped admin and editor groups, people added by hand, by the allowed
/// domain and by project invites, workspace and directory groups, every asset kind shared
/// in every way, and projects shared with users, groups, the workspace and the web.
///
/// `authzctl demo` writes it; the README's first questions are asked against it.
public enum DemoWorkspace {
    public static let workspace: Workspace = {
        var users: [User] = [
            // Directory-synced (Okta): roles come from g-okta-hex-admins / g-okta-hex-editors.
            User(id: "ada", email: "ada@acme.com", origin: .directory),
            User(id: "grace", email: "grace@acme.com", origin: .directory),
            User(id: "linus", email: "linus@acme.com", origin: .directory),
            User(id: "barbara", email: "barbara@acme.com", origin: .directory),
            User(id: "ken", email: "ken@acme.com", origin: .directory),
            User(id: "margaret", email: "margaret@acme.com", origin: .directory),
            User(id: "dennis", email: "dennis@acme.com", origin: .directory),
            User(id: "frances", email: "frances@acme.com", origin: .directory),
            User(id: "edsger", email: "edsger@acme.com", origin: .directory, active: false),
            // Set by an Admin in the administration panel.
            User(id: "alan", email: "alan@acme.com", origin: .manual, role: .admin),
            User(id: "katherine", email: "katherine@acme.com", origin: .manual, role: .manager),
            User(id: "john", email: "john@acme.com", origin: .manual, role: .editor),
            User(id: "radia", email: "radia@acme.com", origin: .manual, role: .editor),
            User(id: "donald", email: "donald@acme.com", origin: .manual, role: .explorer),
            User(id: "hedy", email: "hedy@acme.com", origin: .manual, role: .explorer),
            User(id: "claude", email: "claude@acme.com", origin: .manual, role: .viewer),
            User(id: "sophie", email: "sophie@acme.com", origin: .manual, role: .viewer),
            User(id: "tim", email: "tim@acme.com", origin: .manual, role: .editor, active: false),
            // Joined through the allowed domain: default role viewer.
            User(id: "annie", email: "annie@acme.com", origin: .domain),
            User(id: "guido", email: "guido@ACME.com", origin: .domain),
            User(id: "yukihiro", email: "yukihiro@acme.com", origin: .domain),
            User(id: "bjarne", email: "bjarne@acme.com", origin: .domain),
            // Invited to a project: guests unless their domain is allowed.
            User(id: "carla-contractor", email: "carla@contractor.io", origin: .invite),
            User(id: "pat-partner", email: "pat@partner.co", origin: .invite),
            User(id: "cand-2026-11", email: "candidate@gmail.com", origin: .invite),
            User(id: "ivan", email: "ivan@acme.com", origin: .invite),
            User(id: "joan-guest", email: "joan@agency.io", origin: .manual, role: .guest),
        ]
        users.sort { $0.id < $1.id }

        let groups: [Group] = [
            Group(id: "g-okta-hex-admins", name: "Hex Admins", source: .directory, members: ["ada", "grace"]),
            Group(id: "g-okta-hex-editors", name: "Hex Editors", source: .directory,
                  members: ["grace", "linus", "barbara", "ken", "edsger"]),
            Group(id: "g-okta-finance", name: "Finance", source: .directory, members: ["margaret", "dennis", "katherine"]),
            Group(id: "g-okta-people-ops", name: "People Ops", source: .directory, members: ["frances"]),
            Group(id: "g-data-team", name: "Data Team", source: .workspace,
                  members: ["ada", "linus", "barbara", "john", "radia", "donald"]),
            Group(id: "g-growth", name: "Growth", source: .workspace,
                  members: ["ken", "hedy", "claude", "annie", "carla-contractor"]),
            Group(id: "g-leadership", name: "Leadership", source: .workspace, members: ["alan", "katherine", "sophie"]),
        ]

        let assets: [Asset] = [
            Asset(id: "dc-warehouse", kind: .dataConnection, name: "Snowflake warehouse"),
            Asset(id: "dc-finance", kind: .dataConnection, name: "Finance Postgres", groups: ["g-okta-finance"]),
            Asset(id: "dc-payroll", kind: .dataConnection, name: "Payroll", groups: ["g-okta-people-ops", "g-okta-finance"]),
            Asset(id: "dc-interviews", kind: .dataConnection, name: "Interview sandbox", groups: ["workspace_guests"]),
            Asset(id: "sec-openai", kind: .secret, name: "OpenAI API key", groups: ["g-data-team", "g-growth"]),
            Asset(id: "sec-root", kind: .secret, name: "Warehouse admin password", groups: []),
            Asset(id: "git-metrics", kind: .gitPackage, name: "acme/metrics-lib", groups: ["workspace"]),
            Asset(id: "s3-public-datasets", kind: .externalFile, name: "Public datasets bucket", groups: ["public"]),
        ]

        let projects: [Project] = [
            Project(id: "revenue-dashboard", owner: "linus", workspaceAccess: .canView,
                    grants: [.group("g-data-team", .canEdit), .group("g-leadership", .canExplore), .user("carla-contractor", .canView)],
                    assets: ["dc-warehouse", "git-metrics"]),
            Project(id: "quarterly-close", owner: "margaret", workspaceAccess: .none,
                    grants: [.group("g-okta-finance", .fullAccess), .user("john", .canEdit), .user("alan", .canView)],
                    assets: ["dc-finance", "dc-warehouse"]),
            Project(id: "payroll-audit", owner: "frances",
                    grants: [.user("katherine", .canEdit), .user("radia", .canEdit)],
                    assets: ["dc-payroll"]),
            Project(id: "growth-experiments", owner: "ken", workspaceAccess: .canExplore,
                    grants: [.group("g-growth", .canEdit), .user("pat-partner", .canEdit)],
                    assets: ["dc-warehouse", "sec-openai"]),
            Project(id: "candidate-take-home", owner: "john",
                    grants: [.user("cand-2026-11", .canEdit), .user("joan-guest", .canExplore)],
                    assets: ["dc-interviews"]),
            Project(id: "public-covid-tracker", owner: "barbara", workspaceAccess: .canViewApp, publicAccess: .canViewApp,
                    assets: ["s3-public-datasets"]),
            Project(id: "company-okrs", owner: "alan", workspaceAccess: .canView,
                    grants: [.group("g-leadership", .fullAccess)]),
            Project(id: "infra-costs", owner: "grace", workspaceAccess: .canEdit, assets: ["sec-root", "dc-warehouse"]),
            Project(id: "scratchpad", owner: "donald"),
        ]

        return Workspace(
            settings: WorkspaceSettings(
                plan: .enterprise,
                allowedDomains: ["acme.com"],
                defaultDomainRole: .viewer,
                viewerSeatsPaid: false,
                directorySync: DirectorySync(enabled: true, roleSync: true, roleMappings: [
                    RoleMapping(group: "g-okta-hex-admins", role: .admin),
                    RoleMapping(group: "g-okta-hex-editors", role: .editor),
                ])
            ),
            users: users, groups: groups, assets: assets, projects: projects
        )
    }()
}

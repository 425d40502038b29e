// What a notebook service asks before it runs a cell: may this user edit the project, and
// may they use this data connection in it? Both questions go to the sidecar at once, and
// any failure to get an answer (sidecar down, deadline) denies: the guard fails closed.
//
//   swift-service SOCKET USER PROJECT CONNECTION
//
// Prints the decision and the reasons; exits 0 when allowed, 1 when denied, 2 on bad usage.

import AuthzClient
import AuthzEngine

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The service's guard around the sidecar client (share one per process).
struct CellGuard {
    let client: SidecarClient

    struct Decision {
        var allowed: Bool
        var why: String
    }

    func mayRunCell(user: String, project: String, connection: String) async -> Decision {
        do {
            async let permission = client.effectivePermission(user: user, project: project, requiredLevel: .canEdit)
            async let use = client.canUse(user: user, asset: connection, project: project, requiredAccess: .use)
            let (p, u) = try await (permission, use)
            return Decision(
                allowed: p.result.allowed && u.result.allowed,
                why: "project: \(p.result.level.name) (\(p.result.reason.name)), "
                    + "connection: \(u.result.access.name) (\(u.result.reason.name)), "
                    + "snapshot \(max(p.snapshotVersion, u.snapshotVersion))")
        } catch {
            // No answer is a denial; the code says whether retrying may help.
            return Decision(allowed: false, why: "no answer from the sidecar: \(error)")
        }
    }
}

let arguments = CommandLine.arguments
guard arguments.count == 5 else {
    print("usage: swift-service SOCKET USER PROJECT CONNECTION")
    exit(2)
}
let client = SidecarClient(
    socketPath: arguments[1],
    configuration: .init(connectTimeout: .seconds(1), callTimeout: .milliseconds(250)))
let decision = await CellGuard(client: client).mayRunCell(user: arguments[2], project: arguments[3], connection: arguments[4])
await client.close()
print("\(decision.allowed ? "allowed" : "denied"): \(decision.why)")
exit(decision.allowed ? 0 : 1)

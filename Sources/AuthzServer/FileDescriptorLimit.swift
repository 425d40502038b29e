// The open-files limit: raised from the soft to the hard limit at start, so the default
// --max-connections (1024, a common soft limit) can be honoured, and a warning when it
// cannot. Running out anyway is handled where connections are accepted (EpollAcceptor;
// SwiftNIO backs off accepting by itself).

import Logging

#if canImport(Glibc)
import Glibc
#endif

enum FileDescriptorLimit {
    /// Descriptors the server needs besides its connections: the listener, event loops,
    /// wake-up pipes, the database and its journal files, the file watch, the log.
    static let overhead: UInt64 = 64

    /// Raises the soft limit to the hard limit; warns when `maxConnections` plus the
    /// server's own descriptors do not fit. Returns the soft limit now in force.
    @discardableResult
    static func raise(for maxConnections: Int, logger: Logger) -> UInt64? {
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return nil }
        let before = UInt64(limit.rlim_cur)
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 {
                limit = raised
                logger.debug("raised the open-files limit", metadata: ["from": "\(before)", "to": "\(limit.rlim_cur)"])
            }
        }
        let current = UInt64(limit.rlim_cur)
        let needed = UInt64(maxConnections) + overhead
        if limit.rlim_cur != rlim_t.max, current < needed {
            logger.warning(
                "--max-connections \(maxConnections) cannot be honoured: the open-files limit is \(current) (hard limit \(UInt64(limit.rlim_max))); beyond about \(current > overhead ? current - overhead : 0) connections new ones are answered RESOURCE_EXHAUSTED. Raise the limit (ulimit -n, systemd LimitNOFILE=) or lower --max-connections"
            )
        }
        return current
    }
}

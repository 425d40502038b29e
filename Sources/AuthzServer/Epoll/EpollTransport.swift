// The lean transport: one epoll loop per core, each owning its connections outright. Per
// read a connection does one read(2) into its own buffer, the shared connection logic
// (`ConnectionSession` over `ConnectionCore`) answers every complete frame in place, and
// one send(2) writes the answers. Nothing on the request path takes a lock except the
// snapshot-reference read, and nothing hops threads: SwiftNIO's pipeline cost ~3 µs of CPU
// per request here, this ~10x less.
//
// Files: this one (the loops' threads and the transport's controls), EpollLoop.swift (one
// loop: events, tasks, timers), EpollAcceptor.swift (accepting, the connection limit, fd
// exhaustion), EpollConnection.swift (moving one connection's bytes).

import NIOCore
import NIOPosix
import Synchronization

/// The epoll transport of one server: its loops and threads.
final class EpollTransport: Sendable {
    private let loops: [EpollLoop]
    private let pool: NIOThreadPool
    private let finished = Atomic<Int>(0)
    private let allFinished = ReadySignal()

    /// Starts `loopCount` loops serving connections accepted on `listener` (a listening,
    /// non-blocking socket this transport now owns).
    init(listener: Int32, loopCount: Int, context: ServerContext) throws(ServerError) {
        var loops: [EpollLoop] = []
        for index in 0..<max(1, loopCount) {
            loops.append(try EpollLoop(index: index, context: context))
        }
        loops[0].adoptListener(EpollAcceptor(listener: listener, loops: loops, context: context))
        self.loops = loops
        pool = NIOThreadPool(numberOfThreads: loops.count)
        pool.start()
        let count = loops.count
        for loop in loops {
            pool.submit { _ in
                loop.run()
                if self.finished.add(1, ordering: .acquiringAndReleasing).newValue == count {
                    self.allFinished.succeed()
                }
            }
        }
    }

    /// Connections open on every loop.
    var openConnections: Int { loops.reduce(0) { $0 + $1.connectionCount.load(ordering: .relaxed) } }

    /// Has every loop run a no-op task (the liveness probe): one future per loop, completed
    /// on `eventLoop` once that loop ran it, failed if the loop has stopped.
    func ping(replyingOn eventLoop: any EventLoop) -> [EventLoopFuture<Void>] {
        loops.map { loop in
            let promise = eventLoop.makePromise(of: Void.self)
            if !loop.execute({ _ in promise.succeed() }) {
                promise.fail(ServerError(.listener, "epoll loop \(loop.index) has stopped"))
            }
            return promise.futureResult
        }
    }

    /// Stops accepting: closes the listening socket.
    func stopAccepting() {
        loops[0].execute { loop in loop.closeListener() }
    }

    /// Tells every connection to finish what it started, answer, and close.
    func beginDraining() {
        for loop in loops { loop.execute { $0.drain() } }
    }

    /// Closes every connection now.
    func closeAll() {
        for loop in loops { loop.execute { $0.closeAll() } }
    }

    /// Closes everything, stops the loops and waits for their threads.
    func shutdown() async {
        for loop in loops { loop.execute { $0.stop() } }
        try? await allFinished.wait()
        try? await pool.shutdownGracefully()
    }
}

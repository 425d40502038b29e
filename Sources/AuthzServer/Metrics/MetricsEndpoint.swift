// The metrics and health endpoints (--metrics-listen): HTTP/1.1 over SwiftNIO (NIOHTTP1) on
// an event loop thread of their own, never the request loops, on a TCP address or a Unix
// domain socket.
//
//   GET /metrics   the Prometheus text exposition (ServerMetrics)
//   GET /healthz   200 when every request loop runs a no-op task within a second, else 503
//   GET /readyz    200 when a snapshot is in service and checks are not failing closed,
//                  else 503 with the reason on one line
//
// Other paths are 404, other methods 405. What NIOHTTP1 cannot parse (garbage, headers
// over its 80 KiB limit) is answered 400 and the connection closed; connections idle for a
// minute are closed, and at most `maxConnections` are open at once. None of this touches
// the request socket or its loops.

import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What the endpoints ask of the server.
struct MetricsProbes: Sendable {
    /// The exposition text.
    var metrics: @Sendable () -> [UInt8]
    /// Nil when ready, else why not (one line).
    var readiness: @Sendable () -> String?
    /// Completes on the given loop with nil when every request loop answered, else why not.
    var liveness: @Sendable (any EventLoop) -> EventLoopFuture<String?>
}

final class MetricsEndpoint: Sendable {
    /// The address bound (with the port the system chose for port 0).
    let address: MetricsAddress
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let socketIdentity: FileIdentity?

    static let maxConnections = 64
    static let idleTimeout: TimeAmount = .seconds(60)

    private init(
        address: MetricsAddress, group: MultiThreadedEventLoopGroup, channel: any Channel, socketIdentity: FileIdentity?
    ) {
        self.address = address
        self.group = group
        self.channel = channel
        self.socketIdentity = socketIdentity
    }

    /// Binds `address` and serves the endpoints until `stop()`.
    static func start(_ address: MetricsAddress, probes: MetricsProbes, logger: Logger) async throws -> MetricsEndpoint {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let open = OpenCount()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 64)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard open.value.add(1, ordering: .relaxed).newValue <= Self.maxConnections else {
                        open.value.subtract(1, ordering: .relaxed)
                        channel.close(promise: nil)
                        return
                    }
                    channel.closeFuture.whenComplete { _ in open.value.subtract(1, ordering: .relaxed) }
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(IdleStateHandler(allTimeout: Self.idleTimeout))
                    try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
                    try pipeline.addHandler(MetricsHTTPHandler(probes: probes))
                }
            }
        do {
            let channel: any Channel
            var identity: FileIdentity?
            var bound = address
            switch address {
            case .tcp(let host, let port):
                do {
                    channel = try await bootstrap.bind(host: host, port: port).get()
                } catch {
                    throw ServerError(.bind, "cannot listen for metrics on \(address)", cause: error)
                }
                bound = .tcp(host: host, port: channel.localAddress?.port ?? port)
            case .unix(let path):
                try SocketFile.prepareForBind(path)
                do {
                    channel = try await bootstrap.bind(unixDomainSocketPath: path).get()
                } catch {
                    throw ServerError(.bind, "cannot listen for metrics on \(path)", cause: error)
                }
                identity = SocketFile.identity(path)
            }
            logger.info("metrics listening", metadata: ["metrics-address": "\(bound)"])
            return MetricsEndpoint(address: bound, group: group, channel: channel, socketIdentity: identity)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Closes the listener (and removes its socket file) and every connection.
    func stop() async {
        try? await channel.close()
        if case .unix(let path) = address { SocketFile.remove(path, ifIdentity: socketIdentity) }
        try? await group.shutdownGracefully()
    }
}

private final class OpenCount: Sendable {
    let value = Atomic<Int>(0)
}

/// Answers one connection's requests, in order (NIOHTTP1's pipelining handler holds later
/// requests until the answer before them is written).
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let probes: MetricsProbes
    private var head: HTTPRequestHead?

    static let paths = ["/metrics", "/healthz", "/readyz"]
    static let exposition = "text/plain; version=0.0.4; charset=utf-8"
    static let text = "text/plain; charset=utf-8"

    init(probes: MetricsProbes) {
        self.probes = probes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break  // no endpoint takes a body
        case .end:
            guard let head else { return }
            self.head = nil
            respond(context, head)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func respond(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        let path = String(head.uri.prefix { $0 != "?" })
        guard Self.paths.contains(path) else {
            send(context, head, .notFound, "not found: the endpoints are /metrics, /healthz and /readyz\n")
            return
        }
        guard head.method == .GET else {
            send(context, head, .methodNotAllowed, "method not allowed: use GET\n", extra: [("Allow", "GET")])
            return
        }
        switch path {
        case "/metrics":
            send(context, head, .ok, probes.metrics(), contentType: Self.exposition)
        case "/readyz":
            if let reason = probes.readiness() {
                send(context, head, .serviceUnavailable, "not ready: \(Self.oneLine(reason))\n")
            } else {
                send(context, head, .ok, "ready\n")
            }
        default:
            probes.liveness(context.eventLoop).assumeIsolated().whenComplete { result in
                switch result {
                case .success(nil):
                    self.send(context, head, .ok, "alive\n")
                case .success(let reason?):
                    self.send(context, head, .serviceUnavailable, "not alive: \(Self.oneLine(reason))\n")
                case .failure(let error):
                    self.send(context, head, .serviceUnavailable, "not alive: \(Self.oneLine("\(error)"))\n")
                }
            }
        }
    }

    private func send(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: String,
        extra: [(String, String)] = []
    ) {
        send(context, head, status, Array(body.utf8), contentType: Self.text, extra: extra)
    }

    private func send(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: [UInt8],
        contentType: String, extra: [(String, String)] = []
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        for (name, value) in extra { headers.add(name: name, value: value) }
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let responseHead = HTTPResponseHead(version: head.version, status: status, headers: headers)
        context.write(Self.wrapOutboundOut(.head(responseHead)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }

    private static func oneLine(_ text: String) -> String {
        String(text.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }
}

/// Completes a promise once, from whichever of several callbacks comes first.
final class FirstCompletion: Sendable {
    private let done = Atomic<Bool>(false)

    func claim() -> Bool {
        !done.exchange(true, ordering: .acquiringAndReleasing)
    }
}

// The idiomatic Swift layer over the generated UniFFI API (Tidewire.swift):
// closures that return cancellable tokens, AsyncStreams of events and of
// state, Codable arguments, delivery on a chosen DispatchQueue (main by
// default). Hand-written and small; everything it does goes through the
// generated types. Not compiled on the Linux machine the repository is
// developed on (no Swift toolchain there): build it on macOS.
import Foundation

/// A registered listener. `cancel()` stops delivery and releases the
/// closure (and whatever it captured); tokens are not cancelled on deinit,
/// so fire-and-forget `on` calls keep working.
public final class ListenerToken {
    private let subscription: Subscription
    init(_ subscription: Subscription) { self.subscription = subscription }
    /// Stops delivery; later calls do nothing.
    public func cancel() { subscription.cancel() }
}

/// A Codable argument list: each Encodable becomes one argument; `Data`
/// arguments travel as binary attachments.
public struct SocketArguments {
    public let args: Args

    public init(_ items: [any Encodable]) throws {
        var parts: [String] = []
        var binary: [Data] = []
        let encoder = JSONEncoder()
        for item in items {
            if let data = item as? Data {
                parts.append("{\"_placeholder\":true,\"num\":\(binary.count)}")
                binary.append(data)
            } else {
                parts.append(String(decoding: try encoder.encode(AnyEncodable(item)), as: UTF8.self))
            }
        }
        args = Args(json: "[" + parts.joined(separator: ",") + "]", binary: binary)
    }

    public init(_ args: Args) { self.args = args }

    /// Argument `index` decoded as `T` (a binary attachment as `Data`).
    public func decode<T: Decodable>(_ type: T.Type, at index: Int = 0) throws -> T {
        let values = try JSONSerialization.jsonObject(with: Data(args.json.utf8), options: [.fragmentsAllowed])
        guard let list = values as? [Any], index < list.count else {
            throw ClientError.InvalidArgument(message: "no argument \(index)")
        }
        if T.self == Data.self, let obj = list[index] as? [String: Any], obj["_placeholder"] as? Bool == true,
           let num = obj["num"] as? Int, num < args.binary.count {
            return args.binary[num] as! T
        }
        let one = try JSONSerialization.data(withJSONObject: list[index], options: [.fragmentsAllowed])
        return try JSONDecoder().decode(T.self, from: one)
    }
}

private struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: Encoder) throws { try value.encode(to: encoder) }
}

/// Calls a closure on `queue` for each event (asynchronously), or
/// synchronously on `queue` when the closure answers an ack.
private final class ClosureListener: EventListener, @unchecked Sendable {
    private let queue: DispatchQueue
    private let handler: (SocketArguments) -> Args?
    private let answers: Bool

    init(queue: DispatchQueue, answers: Bool, handler: @escaping (SocketArguments) -> Args?) {
        self.queue = queue
        self.answers = answers
        self.handler = handler
    }

    func onEvent(event: String, args: Args) -> Args? {
        let arguments = SocketArguments(args)
        guard answers else {
            queue.async { [handler] in _ = handler(arguments) }
            return nil
        }
        // The ack is answered with the closure's value, after it ran.
        return queue.sync { handler(arguments) }
    }
}

private final class StateRelay: SocketStateListener, @unchecked Sendable {
    private let queue: DispatchQueue
    private let handler: (SocketState) -> Void
    init(queue: DispatchQueue, handler: @escaping (SocketState) -> Void) {
        self.queue = queue
        self.handler = handler
    }
    func onState(state: SocketState) { queue.async { [handler] in handler(state) } }
}

private final class EmitErrorRelay: EmitErrorListener, @unchecked Sendable {
    private let queue: DispatchQueue
    private let handler: (String, String) -> Void
    init(queue: DispatchQueue, handler: @escaping (String, String) -> Void) {
        self.queue = queue
        self.handler = handler
    }
    func onEmitError(event: String, message: String) { queue.async { [handler] in handler(event, message) } }
}

private final class AuthClosure: AuthProvider, @unchecked Sendable {
    private let provide: () -> [String: String]?
    init(_ provide: @escaping () -> [String: String]?) { self.provide = provide }
    func authJson() -> String? {
        guard let auth = provide(), let data = try? JSONEncoder().encode(auth) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}

/// A Socket.IO client: one connection (a `SocketManager`) and its main
/// namespace's socket, delivering on `queue` (main by default). Releasing
/// it closes the connection.
public final class TidewireClient {
    public let manager: SocketManager
    public let socket: Socket
    public let queue: DispatchQueue

    /// Connects to `url`, namespace `namespace`. `auth` is asked on every
    /// (re)connection, so it can return a fresh token.
    public init(url: String, namespace: String = "/", options: ManagerOptions = ManagerOptions(),
                queue: DispatchQueue = .main, auth: (() -> [String: String]?)? = nil) throws {
        manager = try SocketManager(url: url, options: options)
        socket = try manager.socket(namespace: namespace, authJson: nil,
                                    authProvider: auth.map { AuthClosure($0) as AuthProvider })
        self.queue = queue
    }

    deinit { manager.close() }

    /// Another namespace over the same connection.
    public func socket(namespace: String) throws -> Socket {
        try manager.socket(namespace: namespace, authJson: nil, authProvider: nil)
    }

    /// Calls `handler` on `queue` for each `event`.
    @discardableResult
    public func on(_ event: String, handler: @escaping (SocketArguments) -> Void) -> ListenerToken {
        let listener = ClosureListener(queue: queue, answers: false) { handler($0); return nil }
        return ListenerToken(socket.on(event: event, listener: listener))
    }

    /// Calls `handler` on `queue` with `event`'s first argument decoded as `T`.
    @discardableResult
    public func on<T: Decodable>(_ event: String, as type: T.Type,
                                 handler: @escaping (T) -> Void) -> ListenerToken {
        on(event) { args in if let value = try? args.decode(T.self) { handler(value) } }
    }

    /// Calls `handler` for the next `event` only.
    @discardableResult
    public func once(_ event: String, handler: @escaping (SocketArguments) -> Void) -> ListenerToken {
        let listener = ClosureListener(queue: queue, answers: false) { handler($0); return nil }
        return ListenerToken(socket.once(event: event, listener: listener))
    }

    /// Answers the server's ack requests for `event` with `handler`'s value.
    @discardableResult
    public func onAck(_ event: String,
                      handler: @escaping (SocketArguments) throws -> [any Encodable]) -> ListenerToken {
        let listener = ClosureListener(queue: queue, answers: true) { args in
            (try? SocketArguments(handler(args)))?.args
        }
        return ListenerToken(socket.on(event: event, listener: listener))
    }

    /// Every event, as an AsyncStream; ending the iteration cancels it.
    public func events(_ event: String) -> AsyncStream<SocketArguments> {
        AsyncStream { continuation in
            let token = socket.on(event: event, listener: ClosureListener(queue: queue, answers: false) {
                continuation.yield($0)
                return nil
            })
            continuation.onTermination = { _ in token.cancel() }
        }
    }

    /// The socket's states from now on, as an AsyncStream.
    public func states() -> AsyncStream<SocketState> {
        AsyncStream { continuation in
            continuation.yield(socket.state())
            let token = socket.onState(listener: StateRelay(queue: queue) { continuation.yield($0) })
            continuation.onTermination = { _ in token.cancel() }
        }
    }

    /// Calls `handler(event, message)` on `queue` when an emit fails after
    /// it returned (it waited offline and is larger than the server's
    /// maxPayload; an emit with an ack throws instead).
    @discardableResult
    public func onEmitError(handler: @escaping (String, String) -> Void) -> ListenerToken {
        ListenerToken(socket.onEmitError(listener: EmitErrorRelay(queue: queue, handler: handler)))
    }

    /// Sends `event` (buffered while offline).
    public func emit(_ event: String, _ items: any Encodable...) throws {
        try socket.emit(event: event, args: SocketArguments(items).args)
    }

    /// Sends `event` now or never.
    public func emitVolatile(_ event: String, _ items: any Encodable...) throws {
        try socket.emitVolatile(event: event, args: SocketArguments(items).args)
    }

    /// Sends `event` and returns the server's answer.
    public func emitWithAck(_ event: String, _ items: any Encodable...,
                            timeout: TimeInterval? = nil) async throws -> SocketArguments {
        let reply = try await socket.emitWithAck(event: event, args: SocketArguments(items).args,
                                                 timeoutMs: timeout.map { UInt64($0 * 1000) })
        return SocketArguments(reply)
    }

    /// Forward the app's lifecycle (e.g. from `scenePhase` or NWPathMonitor).
    public func appDidEnterBackground() { manager.appDidEnterBackground() }
    public func appWillEnterForeground() { manager.appWillEnterForeground() }
    public func networkPathChanged() { manager.networkPathChanged() }

    /// Leaves and closes the connection.
    public func disconnect() { manager.close() }
}

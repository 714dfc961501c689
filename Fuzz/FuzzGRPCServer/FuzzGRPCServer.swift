import FuzzSupport
import GRPCWire
import NIOCore
import NIOEmbedded

/// A client connection with fuzzed frames against the server's real connection pipeline
/// (swift-nio-http2's frame decoder and HPACK, the connection guards and budgets, each stream's
/// header checks, gRPC deframer and gzip): nothing traps, and once the connection is closed no
/// call handler is left behind.
///
/// The input is a program: after the client preface, each step takes an opcode byte and its
/// operands from the input, and sends well-formed request headers, gRPC messages (plain or
/// gzip-flagged, of fuzzed content and declared length), raw frames of any type, resets,
/// window updates or pings, or lets time pass (deadlines fire).

final class EchoStream: GRPCStreamingCall {
    let sender: GRPCStreamSender
    init(_ sender: GRPCStreamSender) { self.sender = sender }
    func received(_ message: [UInt8]) {
        if message.first == 0xff { return sender.finish(GRPCStatus(.internal, "asked to fail")) }
        sender.send(message)
    }
    func receivedEnd() { sender.finish() }
    func writabilityChanged(_ isWritable: Bool) {}
    func closed() {}
}

let routes: GRPCRoutes = {
    var r = GRPCRoutes()
    r.add(service: "f.S", method: "Echo", .unary { request, _, responder in responder.succeed(request) })
    r.add(service: "f.S", method: "Big", .unary { request, _, responder in
        responder.succeed([UInt8](repeating: 1, count: Int(request.first ?? 0) * 1024))
    })
    r.add(service: "f.S", method: "Stream", .streaming { _, sender in EchoStream(sender) })
    r.declare(service: "f.T")
    return r
}()

let limits: GRPCConnectionLimits = {
    var l = GRPCConnectionLimits()
    l.maxReceiveMessageBytes = 64 * 1024
    l.connectionResponseBudgetBytes = 256 * 1024
    l.connectionRequestBudgetBytes = 128 * 1024
    l.maxConcurrentStreams = 64
    return l
}()

struct Input {
    var bytes: [UInt8]
    var at = 0
    var isEmpty: Bool { at >= bytes.count }
    mutating func byte() -> UInt8 {
        guard at < bytes.count else { return 0 }
        defer { at += 1 }
        return bytes[at]
    }
    mutating func take(_ n: Int) -> [UInt8] {
        let end = min(bytes.count, at + n)
        defer { at = end }
        return Array(bytes[at..<end])
    }
}

func frame(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8]) -> [UInt8] {
    let n = payload.count
    return [UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), type, flags,
            UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
}

/// A literal header field without indexing (names and values shorter than 127 bytes).
func literal(_ name: String, _ value: String) -> [UInt8] {
    let n = Array(name.utf8.prefix(126)), v = Array(value.utf8.prefix(126))
    return [0, UInt8(n.count)] + n + [UInt8(v.count)] + v
}

let paths = ["/f.S/Echo", "/f.S/Big", "/f.S/Stream", "/f.S/Nope", "/f.T/X", "/nope", "", "/f.S/Echo/extra"]
let contentTypes = ["application/grpc", "application/grpc+proto", "application/grpc;x=1", "text/plain", "application/grpcx", ""]
let timeouts = [nil, "1S", "100m", "5u", "1n", "99999999H", "x", "", "1", "-1S"]
let encodings = [nil, "gzip", "identity", "br", ""]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = Input(bytes: Array(UnsafeBufferPointer(start: data, count: size)))
    let channel = EmbeddedChannel()
    do {
        try GRPCServer.configureConnection(channel, routes: routes, limits: limits)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    } catch {
        fatalError("pipeline: \(error)")
    }
    func deliver(_ bytes: [UInt8]) -> Bool {
        do {
            try channel.writeInbound(channel.allocator.buffer(bytes: bytes))
        } catch {
            return false    // a connection error: the server closes
        }
        while (try? channel.readOutbound(as: ByteBuffer.self)) != nil {}
        return channel.isActive
    }
    var open = deliver(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(type: 4, flags: 0, stream: 0, payload: []))
    var nextStream: UInt32 = 1
    var streams: [UInt32] = []
    var steps = 0
    while open && !input.isEmpty && steps < 64 {
        steps += 1
        let op = input.byte()
        let choice = input.byte()
        let pick = streams.isEmpty ? nextStream : streams[Int(choice) % streams.count]
        var bytes: [UInt8] = []
        switch op % 8 {
        case 0, 1:
            let flags = input.byte()
            var block = literal(":method", flags & 0x80 == 0 ? "POST" : "GET") + literal(":scheme", "http")
                + literal(":path", paths[Int(input.byte()) % paths.count]) + literal(":authority", "x")
            let ct = contentTypes[Int(input.byte()) % contentTypes.count]
            if !ct.isEmpty { block += literal("content-type", ct) }
            if let t = timeouts[Int(input.byte()) % timeouts.count] { block += literal("grpc-timeout", t) }
            if let e = encodings[Int(input.byte()) % encodings.count] { block += literal("grpc-encoding", e) }
            if flags & 0x40 != 0 { block += literal("te", "trailers") }
            bytes = frame(type: 1, flags: 0x4 | (flags & 1), stream: nextStream, payload: block)
            streams.append(nextStream)
            nextStream += 2
        case 2, 3:
            // One gRPC message, flagged compressed or not, its declared length fuzzed around the real one.
            let flags = input.byte()
            let length = Int(input.byte()) * 4
            var payload = input.take(length)
            if flags & 0x10 != 0 { payload = Gzip.compress(payload) }
            var declared = payload.count
            if flags & 0x20 != 0 { declared += Int(input.byte()) - 128 }
            if flags & 0x40 != 0 { declared = Int(input.byte()) << 16 }
            let prefix: [UInt8] = [flags & 0x10 != 0 ? 1 : (flags >> 7)] + withUnsafeBytes(of: UInt32(truncatingIfNeeded: max(0, declared)).bigEndian) { Array($0) }
            bytes = frame(type: 0, flags: flags & 1, stream: pick, payload: prefix + payload)
        case 4:
            // Any frame at all.
            let type = input.byte() % 12
            let flags = input.byte()
            let stream = input.byte() % 4 == 0 ? 0 : pick
            bytes = frame(type: type, flags: flags, stream: stream, payload: input.take(Int(input.byte())))
        case 5:
            bytes = frame(type: 3, flags: 0, stream: pick, payload: [0, 0, 0, input.byte() % 14])
        case 6:
            let increment = UInt32(input.byte()) << UInt32(input.byte() % 24)
            bytes = frame(type: 8, flags: 0, stream: input.byte() & 1 == 0 ? 0 : pick,
                          payload: withUnsafeBytes(of: increment.bigEndian) { Array($0) })
        default:
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(Int64(input.byte()) * 10))
            continue
        }
        open = deliver(bytes)
    }
    channel.embeddedEventLoop.advanceTime(by: .seconds(1))
    _ = try? channel.close().wait()
    channel.embeddedEventLoop.run()
    _ = try? channel.finish()
    precondition(GRPCServer.liveCallHandlers == 0, "call handlers left after the connection closed: \(GRPCServer.liveCallHandlers)")
    return 0
}

@_cdecl("FuzzGRPCServer_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzOne)
}

import NIOCore

/// gRPC length-prefixed message framing: 1 byte compressed flag, 4 bytes big-endian length,
/// then the message.
struct MessageDeframer {
    enum Failure: Error {
        case tooLarge(received: Int, limit: Int)
        case compressedWithoutEncoding
        case decompressionFailed
    }

    /// Largest message accepted, after decompression too.
    let maxMessageBytes: Int
    /// Whether the peer declared `grpc-encoding: gzip`.
    let gzip: Bool
    private var buffer: ByteBuffer? = nil

    init(maxMessageBytes: Int, gzip: Bool) {
        self.maxMessageBytes = maxMessageBytes
        self.gzip = gzip
    }

    mutating func append(_ bytes: ByteBuffer) {
        if buffer == nil {
            buffer = bytes
        } else {
            var incoming = bytes
            buffer!.writeBuffer(&incoming)
        }
    }

    /// Returns the next complete message, or nil if more bytes are needed.
    mutating func next() throws(Failure) -> [UInt8]? {
        guard var buf = buffer, buf.readableBytes >= 5 else { return nil }
        let flag = buf.getInteger(at: buf.readerIndex, as: UInt8.self)!
        let length = Int(buf.getInteger(at: buf.readerIndex + 1, as: UInt32.self)!)
        if length > maxMessageBytes { throw .tooLarge(received: length, limit: maxMessageBytes) }
        guard buf.readableBytes >= 5 + length else { return nil }
        buf.moveReaderIndex(forwardBy: 5)
        let bytes = buf.readBytes(length: length)!
        if buf.readableBytes == 0 {
            buffer = nil
        } else {
            buf.discardReadBytes()
            buffer = buf
        }
        guard flag & 1 == 1 else { return bytes }
        guard gzip else { throw .compressedWithoutEncoding }
        do {
            return try Gzip.decompress(bytes, limit: maxMessageBytes)
        } catch .tooLarge {
            throw .tooLarge(received: maxMessageBytes + 1, limit: maxMessageBytes)
        } catch {
            throw .decompressionFailed
        }
    }

    var hasPartialMessage: Bool { (buffer?.readableBytes ?? 0) > 0 }

    /// Bytes held of messages not complete yet.
    var bufferedBytes: Int { buffer?.readableBytes ?? 0 }

    /// Drops what is buffered (the call is over).
    mutating func discard() { buffer = nil }
}

enum MessageFramer {
    static func frame(_ message: [UInt8], gzip: Bool, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buf = allocator.buffer(capacity: message.count + 5)
        append(message, gzip: gzip, to: &buf)
        return buf
    }

    /// Appends the length-prefixed message to `buffer` (several messages may share one DATA frame).
    static func append(_ message: [UInt8], gzip: Bool, to buffer: inout ByteBuffer) {
        let payload = gzip ? Gzip.compress(message) : message
        buffer.writeInteger(UInt8(gzip ? 1 : 0))
        buffer.writeInteger(UInt32(payload.count))
        buffer.writeBytes(payload)
    }
}

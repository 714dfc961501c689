import ArgumentParser
import EtcdAPI
import GRPCWire
import NIOCore

/// The `--user name:password` of the client subcommands (`bench`, `cluster-status`): logs in
/// over `client` and returns the metadata that carries the token on later calls; none without
/// a user.
func tokenMetadata(user: String?, client: GRPCClient, timeout: TimeAmount? = nil) async throws -> [(String, String)] {
    guard let user else { return [] }
    guard let colon = user.firstIndex(of: ":") else { throw ValidationError("--user takes name:password") }
    let login = AuthenticateRequest(name: String(user[..<colon]), password: String(user[user.index(after: colon)...]))
    let answer = try AuthenticateResponse(protoBytes: try await client.unary(
        path: "/etcdserverpb.Auth/Authenticate", request: login.protoBytes(), timeout: timeout))
    return [("token", answer.token)]
}

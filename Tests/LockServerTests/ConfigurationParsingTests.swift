import LockCore
import Testing

@testable import LockServer

@Suite("configuration and access, in process")
struct ConfigurationParsingTests {
    @Test("a file sets what it names and keeps the defaults for the rest; inf means unbounded")
    func parses() throws {
        let text = """
            [limits]
            max_clients = 3
            max_wait = inf
            default_ttl = 60
            [shutdown]
            grace = 1e300
            [[access.rule]]
            locks = "deploy/*"
            acquire = [1000]
            """
        let configuration = try ConfigurationFile.parse(text, file: "t.toml")
        #expect(configuration.limits.maxClients == 3)
        #expect(configuration.limits.maxWait == nil && configuration.limits.defaultTTL == 60)
        #expect(configuration.shutdownGrace == 1e300, "kept as read; Seconds clamps it where it is used")
        #expect(configuration.limits.maxLineBytes == LockdConfiguration().limits.maxLineBytes)
        #expect(configuration.access.rules.first?.locks == "deploy/*")
    }

    @Test(
        "a bad file names the line and the key",
        arguments: [
            ("[limits]\nmax_clients = 0\n", "t.toml:2: limits.max_clients: must be an integer in 1...1000000"),
            ("[limits]\nmax_wiat = 3\n", "t.toml:2: limits.max_wiat: unknown key"),
            ("[limits]\nline_timeout = inf\n", "limits.line_timeout: must be a finite number of seconds"),
            ("[limits]\nmax_ttl = -1\n", "limits.max_ttl: must be a number of seconds > 0"),
            ("[nope]\n", "unknown section"),
            ("[[access.rule]]\nacquire = [1]\n", "every rule needs a \"locks\" glob"),
        ])
    func refuses(_ text: String, _ expected: String) {
        do {
            _ = try ConfigurationFile.parse(text, file: "t.toml")
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.description.contains(expected), "\(error.description)")
        }
    }

    @Test("access: root may do anything; the first matching rule decides its actions; break is for breakers")
    func access() throws {
        var policy = AccessPolicy()
        var rule = AccessPolicy.Rule(locks: "deploy/*")
        rule.acquire = AccessPolicy.Principals(uids: [1000])
        rule.status = AccessPolicy.Principals(gids: [50])
        policy.rules = [rule]
        policy.breakers = AccessPolicy.Principals(uids: [1001])
        let lock = LockName("deploy/web")!
        let other = LockName("cache")!
        func identity(_ uid: UInt32) -> ClientIdentity { ClientIdentity(pid: 1, uid: uid, gid: uid) }
        #expect(policy.allows(.acquire, lock: lock, identity: identity(0)) { [] })
        #expect(policy.allows(.acquire, lock: lock, identity: identity(1000)) { [] })
        #expect(!policy.allows(.acquire, lock: lock, identity: identity(1001)) { [] })
        #expect(policy.allows(.acquire, lock: other, identity: identity(1001)) { [] }, "no rule: anyone")
        #expect(policy.allows(.status, lock: lock, identity: identity(1002)) { [50] })
        #expect(!policy.allows(.status, lock: lock, identity: identity(1002)) { [51] })
        #expect(policy.allows(.breakLock, lock: other, identity: identity(1001)) { [] })
        #expect(!policy.allows(.breakLock, lock: other, identity: identity(1000)) { [] })
    }
}

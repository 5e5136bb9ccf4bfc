import Testing

@testable import LockServer

@Suite("the whole-service fuzzer")
struct ServiceFuzzTests {
    @Test("a short run of fixed seeds keeps every promise", arguments: [1, 2, 3] as [UInt64])
    func shortRun(seed: UInt64) throws {
        let simulation = try ServiceSimulation(seed: seed, directory: "/tmp")
        let report = try simulation.run(steps: 1500)
        #expect(report.steps == 1500)
        #expect(report.grants > 0 && report.answers > 0)
    }
}

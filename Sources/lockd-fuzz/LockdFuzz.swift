import ArgumentParser
import LockServer

@main
struct LockdFuzz: ParsableCommand {
    func run() throws {}
}
